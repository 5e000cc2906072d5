"""The fixed strings of the findings contract (DESIGN.md §4); code and schema both use these."""

from __future__ import annotations

SCHEMA_ID = "cementscan.findings/1"

# Where a piece of cement lies (DESIGN.md §4, clinical-evidence.md §1.4).
CATEGORIES = (
    "intravertebral",
    "disc",
    "epidural",
    "foraminal",
    "paravertebral_soft_tissue",
    "paravertebral_vein",
    "azygos",
    "ivc",
    "svc",
    "right_heart",
    "pulmonary_artery",
    "other",
)
LEAK_CATEGORIES = tuple(c for c in CATEGORIES if c != "intravertebral")
VENOUS_CATEGORIES = (
    "paravertebral_vein",
    "azygos",
    "ivc",
    "svc",
    "right_heart",
    "pulmonary_artery",
)
CATEGORY_BASES = ("anatomy", "prior", "imported")
# Yeom et al. 2003 B/S/C plus D (intradiscal), clinical-evidence.md §1.1.
YEOM_TYPES = ("B", "S", "C", "D")
SHAPES = ("linear", "nodular", "amorphous", "cast")
SIDES = ("right", "left", "midline")
LUNG_ZONES = ("upper", "middle", "lower")
LEVEL_ANCHORS = ("sacrum", "last_rib", "first_rib", "imported", "none")
CONTRAST_PHASES = ("native", "arterial", "portal_venous", "unknown")
COVERAGE_REGIONS = ("neck", "chest", "abdomen", "pelvis", "lumbar_spine", "thoracic_spine")
INPUT_FORMATS = ("dicom", "nifti", "nrrd", "metaimage")
LATERALITIES = ("right", "left", "bilateral", "none")
PREDOMINANCES = ("right", "left", "balanced", "none")
ZONE_PREDOMINANCES = ("upper", "middle", "lower", "diffuse", "none")
PROXIMALITIES = ("central", "peripheral", "none")

VERTEBRAL_LEVELS = (
    *(f"C{n}" for n in range(1, 8)),
    *(f"T{n}" for n in range(1, 14)),  # T13: a 13th rib-bearing vertebra exists as a variant
    *(f"L{n}" for n in range(1, 7)),  # L6: lumbarised S1
    "S1",
)
