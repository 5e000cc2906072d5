"""Judging a dense component: cement, or a look-alike (cortex, metal, calcification, granuloma)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from cementscan.cement.calibration import Calibration

if TYPE_CHECKING:
    from cementscan.cement.candidates import Candidate

# Metal (screws, clips, filters, prostheses) saturates the standard scale (clinical-evidence.md §4:
# titanium ~6,500 HU, steel above 3,071): a component with this share of voxels at the top of
# the scale is metal. Cement may also saturate (§4 design note, UNCONFIRMED how often), which is
# why a share, not a single voxel, is asked for.
METAL_SATURATED_FRACTION = 0.1
# A thick core (seed-dense voxels surviving a 1.5 mm in-plane erosion, or voxels at
# Calibration.core_hu surviving it in 3D: candidates.py CORE_RADIUS_MM) is an amorphous blob of
# material denser than this scan's ordinary cortex: cortex is a thin shell, calcifications are
# small.
CORE_MIN_ML = 0.03
# Without a core, an extra-osseous piece must still be a real object, not a wire or a clip.
LOOSE_MIN_SEED_ML = 0.1
LOOSE_MIN_WIDTH_MM = 4.0
LOOSE_MIN_FILL = 0.25  # a blob or a spike fills its ellipsoid; a filter's struts do not
# An object seen in fewer seed-dense voxels than this has no shape to read: at coarse pixels
# (4 mm) the apex of an IVC filter, where its thin struts converge, is one or two such voxels.
SHAPE_MIN_SEED_VOXELS = 3
# A spike: an elongated fragment of cement in soft tissue or a blood pool (clinical-evidence.md
# §3: "sharp and elongated spike-like cement fragments" in the IVC and the right heart; 0.1-0.3
# ml at 1,300-2,000 HU read ~1,100-1,300 HU at 2.5-5 mm). Denser than this scan's cortex * 1.3
# (the seed) is denser than any calcification and than mixed contrast in the right ventricle;
# thin metal (filter struts, clips: < 0.1 ml of material) stays below SPIKE_MIN_ML even when
# its partial volume spreads it, and thick metal saturates (rejected above).
SPIKE_MIN_ML = 0.15
SPIKE_MIN_LENGTH_MM = 10.0
SPIKE_MIN_ELONGATION = 3.0
SPIKE_MIN_WIDTH_MM = 3.0
# This much seed-dense material without any thick core is a shell: dense cortex (ribs, femur).
LOOSE_MAX_SEED_ML = 1.0
# ... unless it is solid: a cast in a narrow vein (an IVC or azygos cast 5-8 mm wide has no
# core at 2 mm pixels) fills its cross-section, while cortex rings the marrow in its slices
# (candidates.py "hollow": the share of its in-plane outline that is not dense).
CAST_MAX_HOLLOW = 0.1
# A satellite: a faint fragment of a thin leak near this study's own cement. At thick slices a
# vein or foraminal tract of low-density cement (1,200-1,500 HU, 2-4 mm wide) averages down to
# the seed in a voxel or a few (2 mm pixels, 5 mm slices: 0.02-0.08 ml of 0.1-0.2 ml), below
# LOOSE_MIN_SEED_ML: alone, it could be a calcification or a strut. Beside a vertebral fill it is
# what a reader takes it for, a leak (clinical-evidence.md §1: leaks run from the treated body
# into the disc, canal, foramina and the paravertebral veins). It must be a real object (a
# component this large, where a thin strut or wire is a few voxels), lie in soft tissue, not on
# bone, and read at least as dense as the seed; fragments of a segmental vein lie up to 26 mm
# from their fill (fresh seeds, 5 mm slices). With anatomy, one off every cement route goes
# (lookalikes.py ROUTE_KINDS).
SATELLITE_MIN_ML = 0.1
SATELLITE_REACH_MM = 30.0
SATELLITE_CONFIDENCE = 0.4
# Beside metal, what survives the metal's halo is its partial volume and streaks unless it has a
# thick core of its own (cement around a cement-augmented screw).
NEAR_METAL_CORE_ML = 0.05
# A mantle is thin around the screw and has no thick core either, but it surrounds a screw (a
# pedicle screw is 1-2 ml of titanium; sternal wires, clips and filter struts near a focus are
# < 0.2 ml), it reaches beyond the metal's rim (candidates.py METAL_RIM_MM) and it lies in
# bone. The halo of metal in a vessel lies in blood: soft tissue around an IVC filter, an
# opacified pool around a stent graft (enhanced blood reads in bone's range). With anatomy,
# only mantles inside a vertebral body are kept (lookalikes.py).
NEAR_METAL_OFF_ML = 0.05
# A mantle is cement: most of it reads at cement density (the seed). A screw's blooming fades
# from the metal through partial volume, most of it below the seed: at 5 mm slices it reaches
# 0.1-0.2 ml beyond METAL_RIM_MM, but seed-dense voxels are about a tenth of it (mantles at 2 mm
# pixels: about two thirds).
MANTLE_MIN_SEED_SHARE = 0.3
SCREW_MIN_ML = 0.3  # metal within reach of the mantle (candidates.py _metal_reach)
# In lung: calcified granulomas and nodes are calcium, no denser than cortex; cement (PMMA with
# BaSO4/ZrO2) can be. Below cortex density (partial volume at thick slices) only a linear focus
# along a vessel is taken: "linear or branching... the most suggestive" (clinical-evidence.md §2.2).
LUNG_FOCUS_MIN_IN_LUNG = 0.8  # emboli sit deep in lung; rib and cartilage ends border it
LUNG_LINEAR_ELONGATION = 3.0
LUNG_LINEAR_MIN_LENGTH_MM = 10.0
# A thin embolus lies in a peripheral artery inside aerated lung (clinical-evidence.md §2.2:
# "small ... in peripheral small vessels", no parenchymal reaction): lung surrounds most of it.
# A linear density with soft tissue or bone along one side lies at the chest wall: a rib or a
# costal cartilage (at the edge of the scan, cut off from the skeleton that marks it as bone).
LUNG_LINEAR_MIN_AIR_SHELL = 0.6
# On an enhanced scan a thin linear focus is still taken when it is clearly denser than any
# iodine there can be. Contrast in a pulmonary artery is never denser than its own lumen (CTPA
# 200-550 HU, clinical-evidence.md §4) and partial volume in a thin vessel only lowers it: the
# ceiling is this scan's own blood level (Calibration.blood_hu) or lung vessel level, whichever is
# higher (a portal-venous scan's lung vessels can read above its pools), with a margin for a bolus
# still arriving (chest-cta: lung vessels up to 1.7 x its blood level). Calcium is no denser than
# this scan's cortex (§4: "calcification" +100..+400, cortex +500..+1,900): the focus must also be
# denser than ordinary cortex (Calibration.grow_hu), which keeps out rib and costal-cartilage ends
# at the apex; granulomas are round, not linear (§2.2: "linear or branching... most suggestive").
# It must lie in aerated lung (a peripheral artery, §2.2), not amid the enhanced veins, the SVC
# bolus and the nodes of the hilum and mediastinum, where air is almost absent around a focus; the
# enhanced lumen around the cement takes part of its shell, so less air is asked than natively;
# and it must not run along bone (a rib or costal cartilage at the apex, _along_bone).
ENHANCED_LINEAR_OVER_IODINE = 2.0
ENHANCED_LINEAR_MIN_AIR_SHELL = 0.3
# A focus smaller than the slice is partial-volumed: its peak reads far below its density (a 3 mm
# embolus of 1,300-1,800 HU reads 450-1,100 HU at 5 mm slices). That happens where the voxel is at
# least half as large as the smallest embolus promised (DESIGN.md §7: nodular >= FOCUS_MM) and the
# focus is less than twice the voxel's size: otherwise some voxel lies wholly inside it and its
# peak is its density (1 mm slices of 0.8 mm pixels). Its density as a ball, from its
# excess attenuation (candidates.py projected_density), is not: cement reads denser than this
# scan's cortex again (the seed), calcium does not (clinical-evidence.md §4), and iodine, never
# denser than this scan's lung vessels from which the excess is counted, stays below it. Only a
# focus no deeper than such a ball across the slices (its diameter and a slice either side for
# the partial volume) is read so: a column of contrast along the slice axis is not a ball. A
# lone lung focus lies in aerated lung (air around it: emboli 0.33-0.9 on the tuning phantoms),
# not amid vessels (vessel_frac) or soft tissue: at the hilum, the mediastinum, the chest wall
# and the diaphragm, soft tissue and enhanced vessels continuing across the slices add to the
# excess (real CTs: balls "denser than cortex" with 0.0-0.2 of air around them).
FOCUS_MM = 3.0
LONE_FOCUS_MAX_VESSEL_FRAC = 0.4
LONE_FOCUS_MIN_AIR_SHELL = 0.3
# Where pixels resolve a segmental artery (pixels <= 1 mm in-plane, as clinical CT has them), the
# vessel around a lung focus says more, as it does to a reader (clinical-evidence.md §2.2: emboli
# lie inside pulmonary arteries): an embolus lodged in its artery has the artery leaving it on
# opposite sides (candidates.py _vessel_context: low asymmetry, a modest vessel share of its
# shell), and air mixed into its voxels lowers its projected density. Such a focus is taken from
# LODGED_DENSITY_FRACTION of the seed. Fresh seeds 2000-2019, 0.8 mm pixels, 5 mm slices: lodged
# emboli the seed turned away read 0.71-1.0 x it, lodged-looking granulomas and nodes at most
# 0.66 (tuning seed 6: one at 0.86, hence 0.9). A vessel share above LODGED_VESSEL_FRAC's top is
# a vessel alongside (two granulomas beside vessels at 0.24 and 0.29). At 2 mm pixels blur lends
# every focus a vessel-like shell (emboli and confounders alike, asymmetry medians 0.48 and
# 0.57): not read.
RESOLVED_VESSEL_PIXEL_MM = 1.0
LODGED_VESSEL_FRAC = (0.04, 0.2)
LODGED_MAX_ASYMMETRY = 0.75
LODGED_DENSITY_FRACTION = 0.9
# On an enhanced scan, a large dense column in soft tissue, not embedded in bone, is undiluted
# contrast in a vein (chest-cta SVC: ~10 mL at 1,300-3,071 HU); venous cement casts arrive
# through a vertebra's veins and are a few mL (clinical-evidence.md §2.2). Anatomy, when present,
# marks such a vein not assessable; this is the CT-only fallback.
CONTRAST_COLUMN_ML = 5.0
EXTRAOSSEOUS_BONE_SHELL = 0.35
LUNG_MAX_ML = 2.0  # larger lung "foci" are atelectasis, consolidation or a mass
# Inside an opacified vessel a focus is judged against the lumen around it, not against bone or
# contrast: cement reaches the pulmonary arteries, the IVC and the right heart by the blood
# (clinical-evidence.md §2.2, §3), and PCE is most often seen on CT pulmonary angiography, where
# the lumen is 200-550 HU (§4). Contrast-filled blood never reads denser than its own lumen, so a
# focus denser than this scan's cortex (the seed) ringed by blood at one level is not contrast;
# calcium is in the wall (ringed by lumen on one side, wall and fat on the other), and a lumen
# is a homogeneous pool (context.py), not bone. The lumen must be at this scan's own measured
# blood level (Calibration.blood_hu), not denser: a vein still mixing undiluted contrast is not
# a lumen at one level (chest-cta SVC: 1,300-3,071 HU streaming through ~500 HU blood).
LUMEN_MIN_HU = 200.0  # an adequately opacified pulmonary artery (clinical-evidence.md §4)
LUMEN_OF_BLOOD = (0.6, 1.3)  # the ring's level over this scan's blood level
LUMEN_MIN_HOMOGENEITY = 0.85  # share of the ring at the ring's level (emboli 0.95-1.0)
LUMEN_MIN_IN_POOL = 0.5  # share of the focus inside a homogeneous opacified pool


def judge(
    candidate: Candidate, cal: Calibration, spacing_mm: tuple[float, float, float]
) -> Candidate:
    """The candidate with ``confidence`` (0 = not cement) and ``kind`` set from its features."""
    f = candidate.features
    if f["saturated"] >= METAL_SATURATED_FRACTION:
        return replace(candidate, confidence=0.0, kind="metal")
    # A thin object (no thick core) reading beyond the standard scale is denser than cement can
    # look once partial-volumed: a wire or a clip.
    dense_p90 = f["p90_hu"]
    over_cortex = float(np.clip((dense_p90 - cal.seed_hu) / max(cal.seed_hu, 1.0), 0.0, 1.0))
    if f.get("near_metal", 0.0) and f["core_ml"] < NEAR_METAL_CORE_ML:
        if (
            f.get("metal_ml", 0.0) >= SCREW_MIN_ML
            and f.get("off_metal_ml", 0.0) >= NEAR_METAL_OFF_ML
            and f["seed_ml"] >= MANTLE_MIN_SEED_SHARE * candidate.volume_ml
            and f["bone_shell"] >= EXTRAOSSEOUS_BONE_SHELL
            and f.get("in_pool", 0.0) < LUMEN_MIN_IN_POOL
        ):
            return replace(candidate, confidence=0.5 + 0.3 * over_cortex, kind="screw_mantle")
        return replace(candidate, confidence=0.0, kind="metal_halo")
    if f["core_ml"] <= 0.0 and f.get("beyond_scale", 0.0):
        return replace(candidate, confidence=0.0, kind="metal_thin")
    if (
        cal.opacified
        and f["core_ml"] >= CORE_MIN_ML
        and candidate.volume_ml >= CONTRAST_COLUMN_ML
        and f["bone_shell"] < EXTRAOSSEOUS_BONE_SHELL
    ):
        return replace(candidate, confidence=0.0, kind="contrast_column")
    if f["core_ml"] >= CORE_MIN_ML:
        return replace(candidate, confidence=0.8 + 0.2 * over_cortex, kind="blob")
    if _in_opacified_lumen(candidate, cal, spacing_mm):
        return replace(candidate, confidence=0.5 + 0.3 * over_cortex, kind="intraluminal")
    if f["in_lung"] >= LUNG_FOCUS_MIN_IN_LUNG and candidate.volume_ml <= LUNG_MAX_ML:
        if dense_p90 >= cal.seed_hu:
            return replace(candidate, confidence=0.7 + 0.3 * over_cortex, kind="lung_dense")
        # Below the seed a lung focus is read by its partial volume, as a lone focus in a lung
        # artery, ringed by air and vessel. One that continues dense beyond the lung is the
        # end of a rib or a costal cartilage reaching into the lung mask (the phantoms' rib
        # necks at the posterior lung border read as dense lines there).
        if f.get("dense_outside_lung_ml", 0.0) > 0.0:
            return replace(candidate, confidence=0.0, kind="lung_border_bone")
        # A line in the scan's first or last slice is cut off from its course across the
        # slices, which tells a vessel from the first rib or the clavicle crossing a thick end
        # slice obliquely at the apex (its shell there is half missing too).
        elongated = (
            f["elongation"] >= LUNG_LINEAR_ELONGATION
            and candidate.length_mm >= LUNG_LINEAR_MIN_LENGTH_MM
            and not f.get("at_scan_end", 0.0)
        )
        # On an opacified scan (Calibration.opacified: its own lung vessels) iodine overlaps the
        # partial volume of cement (clinical-evidence.md §4, design note 3): a linear focus is
        # taken only above the iodine this scan can hold (see ENHANCED_LINEAR_OVER_IODINE).
        if elongated and not cal.opacified and f["air_shell"] >= LUNG_LINEAR_MIN_AIR_SHELL:
            excess = (dense_p90 - cal.lung_seed_hu) / max(cal.seed_hu - cal.lung_seed_hu, 1.0)
            return replace(
                candidate, confidence=0.4 + 0.3 * float(np.clip(excess, 0, 1)), kind="lung_linear"
            )
        if (
            elongated
            and cal.opacified
            and f["air_shell"] >= ENHANCED_LINEAR_MIN_AIR_SHELL
            and not _along_bone(f)
        ):
            floor_hu = max(enhanced_iodine_ceiling_hu(cal), cal.grow_hu)
            if dense_p90 >= floor_hu:
                excess = (dense_p90 - floor_hu) / max(cal.seed_hu - floor_hu, 1.0)
                return replace(
                    candidate,
                    confidence=0.4 + 0.3 * float(np.clip(excess, 0, 1)),
                    kind="lung_linear_enhanced",
                )
        # An embolus smaller than the slice: its density as a ball (see FOCUS_MM).
        voxel_mm = max(spacing_mm)
        partial_volume = voxel_mm >= FOCUS_MM / 2.0 and f["projected_diameter_mm"] < 2.0 * voxel_mm
        ball = f["depth_mm"] <= f["projected_diameter_mm"] + 2.0 * spacing_mm[2]
        lodged = (
            sorted(spacing_mm)[1] <= RESOLVED_VESSEL_PIXEL_MM  # the two finer axes, any orientation
            and LODGED_VESSEL_FRAC[0] <= f["vessel_frac"] <= LODGED_VESSEL_FRAC[1]
            and f["asymmetry"] <= LODGED_MAX_ASYMMETRY
        )
        floor_hu = cal.seed_hu * (LODGED_DENSITY_FRACTION if lodged else 1.0)
        if (
            partial_volume
            and ball
            and f["projected_hu"] >= floor_hu
            and f["vessel_frac"] <= LONE_FOCUS_MAX_VESSEL_FRAC
            and f["air_shell"] >= LONE_FOCUS_MIN_AIR_SHELL
        ):
            return replace(candidate, confidence=0.45, kind="lung_partial_volume")
        return replace(candidate, confidence=0.0, kind="lung_round_calcific")
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    if f["seed_ml"] < SHAPE_MIN_SEED_VOXELS * voxel_ml - 1e-9:
        return replace(candidate, confidence=0.0, kind="small_dense")
    if (
        LOOSE_MIN_SEED_ML <= f["seed_ml"] <= LOOSE_MAX_SEED_ML
        and f["width_mm"] >= LOOSE_MIN_WIDTH_MM
        and f["fill"] >= LOOSE_MIN_FILL
    ):
        return replace(candidate, confidence=0.5 + 0.3 * over_cortex, kind="loose")
    # A solid cast holding more seed-dense material than a shell can is no cortex fragment even
    # where it runs beside bone: an IVC cast 4 mm from the vertebral bodies (fresh seed 2029, 1 mm
    # slices) has a bone shell of 0.38, from the bodies and its own blur.
    cast = f["seed_ml"] > LOOSE_MAX_SEED_ML and f["hollow"] <= CAST_MAX_HOLLOW
    spike = (
        dense_p90 >= cal.seed_hu
        and SPIKE_MIN_ML <= candidate.volume_ml
        and (f["seed_ml"] <= LOOSE_MAX_SEED_ML or cast)
        and candidate.length_mm >= SPIKE_MIN_LENGTH_MM
        and f["elongation"] >= SPIKE_MIN_ELONGATION
        and f["width_mm"] >= SPIKE_MIN_WIDTH_MM
        and f["fill"] >= LOOSE_MIN_FILL
        and (cast or not _along_bone(f))
    )
    if spike:
        # Kind "loose": with anatomy, a spike off every cement route is removed (lookalikes).
        return replace(candidate, confidence=0.5 + 0.3 * over_cortex, kind="loose")
    return replace(candidate, confidence=0.0, kind="small_dense")


def satellite_candidate(candidate: Candidate, cal: Calibration) -> bool:
    """Whether a component judged too small to read is a leak's faint fragment, should the
    study's own cement lie within SATELLITE_REACH_MM of it (see SATELLITE_MIN_ML)."""
    f = candidate.features
    return (
        candidate.kind == "small_dense"
        and candidate.volume_ml >= SATELLITE_MIN_ML
        and f["seed_ml"] < LOOSE_MIN_SEED_ML
        and f["p90_hu"] >= cal.seed_hu
        and f["in_lung"] < LUNG_FOCUS_MIN_IN_LUNG
        and f["bone_shell"] < EXTRAOSSEOUS_BONE_SHELL
        and not f.get("near_metal", 0.0)
    )


def enhanced_iodine_ceiling_hu(cal: Calibration) -> float:
    """The densest a thin focus of iodine in this enhanced scan's lung can read, with margin:
    its own opacified blood or lung vessel level, whichever is higher, times
    ENHANCED_LINEAR_OVER_IODINE (clinical-evidence.md §4: contrast never exceeds its lumen)."""
    level = max(cal.blood_hu or 0.0, cal.lung_vessel_hu)
    return ENHANCED_LINEAR_OVER_IODINE * level


def _along_bone(f: dict[str, float]) -> bool:
    """Whether a thin fragment runs along bone (a rib's cortex): dense tissue around most of it,
    unless that tissue is a homogeneous opacified blood pool at one level (a spike in the
    enhanced right ventricle is ringed by blood, not by bone; context.py pools)."""
    if f["bone_shell"] < EXTRAOSSEOUS_BONE_SHELL:
        return False
    in_blood = (
        f.get("in_pool", 0.0) >= LUMEN_MIN_IN_POOL
        and f.get("lumen_homogeneity", 0.0) >= LUMEN_MIN_HOMOGENEITY
    )
    return not in_blood


def _in_opacified_lumen(
    candidate: Candidate, cal: Calibration, spacing_mm: tuple[float, float, float]
) -> bool:
    """Whether a dense focus lies inside an opacified lumen and is denser than any contrast
    there (see LUMEN_MIN_HU)."""
    f = candidate.features
    if cal.blood_hu is None or f.get("in_pool", 0.0) < LUMEN_MIN_IN_POOL:
        return False
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    lumen = f.get("lumen_hu", 0.0)
    return (
        f["p90_hu"] >= cal.seed_hu
        and f["seed_ml"] >= SHAPE_MIN_SEED_VOXELS * voxel_ml - 1e-9
        and lumen >= LUMEN_MIN_HU
        and LUMEN_OF_BLOOD[0] * cal.blood_hu <= lumen <= LUMEN_OF_BLOOD[1] * cal.blood_hu
        and f.get("lumen_homogeneity", 0.0) >= LUMEN_MIN_HOMOGENEITY
    )
