"""Coded concepts for the DICOM and FHIR outputs: SNOMED CT/DCM where pydicom knows a code."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

# Categories without a standard concept get codes in a private scheme ("99" prefix = local,
# DICOM PS3.16 §8.2); its designator fits the 16-character SH limit.
PRIVATE_SCHEME = "99CEMENTSCAN"
PRIVATE_SCHEME_NAME = "cementscan local codes"
UCUM_ML = Code("ml", "UCUM", "milliliter")
UCUM_MM = codes.UCUM.Millimeter
UCUM_ONE = codes.UCUM.NoUnits

PROPERTY_CATEGORY_SUBSTANCE = codes.SCT.Substance  # 105590001
PROPERTY_CATEGORY_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure  # 49755003
# PMMA bone cement is an acrylic resin; pydicom's dictionary has no "bone cement" concept.
ACRYLIC_RESIN = codes.SCT.AcrylicResin  # 261712009
EMBOLUS = codes.SCT.Embolus  # 55584005
FOREIGN_BODY = codes.SCT.ForeignBody  # 19227008


def private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


@dataclass(frozen=True)
class CategoryCodes:
    """How one findings category is coded: what the segment is, and where it lies."""

    category: str
    label: str  # human-readable, also the SEG segment label
    property_category: Code
    property_type: Code
    site: Code  # anatomic region / finding site
    private_code: Code  # 99CEMENTSCAN code naming the category itself (lossless round trip)


def _cat(category: str, label: str, kind: Code, site: Code) -> CategoryCodes:
    prop_category = (
        PROPERTY_CATEGORY_SUBSTANCE if kind is ACRYLIC_RESIN else PROPERTY_CATEGORY_ABNORMAL
    )
    return CategoryCodes(
        category, label, prop_category, kind, site, private(f"CAT-{category}", label)
    )


# Cement inside a vessel is an embolus; outside the body and the vessels a foreign body.
CATEGORY_CODES: dict[str, CategoryCodes] = {
    c.category: c
    for c in (
        _cat("intravertebral", "Intravertebral bone cement", ACRYLIC_RESIN, codes.SCT.Vertebra),
        _cat(
            "disc",
            "Cement in intervertebral disc",
            FOREIGN_BODY,
            # pydicom has only level-specific disc codes; a generic one is local.
            private("SITE-disc", "Intervertebral disc"),
        ),
        _cat("epidural", "Epidural cement", FOREIGN_BODY, codes.SCT.VertebralCanal),
        _cat(
            "foraminal",
            "Foraminal cement",
            FOREIGN_BODY,
            private("SITE-foramen", "Intervertebral foramen"),
        ),
        _cat(
            "paravertebral_soft_tissue",
            "Paravertebral soft-tissue cement",
            FOREIGN_BODY,
            codes.SCT.SoftTissue,
        ),
        _cat("paravertebral_vein", "Cement in paravertebral vein", EMBOLUS, codes.SCT.Vein),
        _cat("azygos", "Cement in azygos vein", EMBOLUS, codes.SCT.AzygosVein),
        _cat("ivc", "Cement in inferior vena cava", EMBOLUS, codes.SCT.InferiorVenaCava),
        _cat("svc", "Cement in superior vena cava", EMBOLUS, codes.SCT.SuperiorVenaCava),
        _cat("right_heart", "Cement in right heart", EMBOLUS, codes.SCT.Heart),
        _cat(
            "pulmonary_artery",
            "Pulmonary cement embolus",
            EMBOLUS,
            codes.SCT.PulmonaryArtery,
        ),
        _cat(
            "other",
            "Extra-osseous cement, other site",
            FOREIGN_BODY,
            private("SITE-other", "Other extra-osseous site"),
        ),
    )
}
CATEGORY_BY_PRIVATE_VALUE = {c.private_code.value: c.category for c in CATEGORY_CODES.values()}

SIDE_CODES: dict[str, Code] = {
    "right": codes.SCT.Right,
    "left": codes.SCT.Left,
    "midline": codes.SCT.Midline,
    "bilateral": codes.SCT.Bilateral,
}

# Names of the qualitative evaluations; no standard concept exists for these questions.
CONCEPT_CATEGORY = private("CATEGORY", "Cement finding category")
CONCEPT_LEVEL = private("LEVEL", "Nearest vertebral level")
CONCEPT_LUNG_ZONE = private("LUNG-ZONE", "Lung zone")
CONCEPT_CONFIDENCE = private("CONFIDENCE", "Finding confidence")
CONCEPT_LEAK = private("LEAK", "Extra-vertebral cement leak present")
CONCEPT_IVC = private("IVC", "Cement in inferior vena cava")
CONCEPT_IVC_CRANIAL = private("IVC-CRANIAL", "IVC cement cranial extent level")
CONCEPT_IVC_LENGTH = private("IVC-LENGTH", "IVC cement cast length")
CONCEPT_RIGHT_HEART = private("RIGHT-HEART", "Cement in right heart")
CONCEPT_PCE = private("PCE", "Pulmonary cement embolism present")
CONCEPT_PCE_COUNT = private("PCE-COUNT", "Number of pulmonary cement emboli")
CONCEPT_PCE_LATERALITY = private("PCE-LATERALITY", "Pulmonary cement embolism laterality")
CONCEPT_PCE_PREDOMINANCE = private("PCE-PREDOMINANCE", "Pulmonary cement embolism predominance")
CONCEPT_PCE_ZONE = private("PCE-ZONE", "Pulmonary cement embolism zone predominance")
CONCEPT_PCE_PROXIMAL = private("PCE-PROXIMAL", "Most proximal pulmonary cement embolus")
CONCEPT_PCE_MAX_LENGTH = private("PCE-MAX-LENGTH", "Longest pulmonary cement embolus")

YES = codes.SCT.Yes
NO = codes.SCT.No
NOT_ASSESSABLE = private("NOT-ASSESSABLE", "Not assessable")


def presence_code(assessable: bool, present: bool | None) -> Code:
    """Yes / No / Not assessable: absence is only claimed where the region was seen."""
    if not assessable or present is None:
        return NOT_ASSESSABLE
    return YES if present else NO


def value_code(value: str) -> Code:
    """A coded answer for enumerations such as laterality or zone (standard code if known)."""
    standard = {**SIDE_CODES, "central": codes.SCT.Central, "peripheral": codes.SCT.Peripheral}
    standard["diffuse"] = codes.SCT.Diffuse
    if value in standard:
        return standard[value]
    return private(f"VAL-{value}", value.replace("_", " "))


def level_code(level: str) -> Code:
    return private(f"LEVEL-{level}", f"Vertebra {level}")


# FHIR: LOINC 18747-6 "CT Report" names the report; categories use the same private system.
FHIR_PRIVATE_SYSTEM = "https://cementscan.org/fhir/CodeSystem/cementscan"
SNOMED_SYSTEM = "http://snomed.info/sct"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
