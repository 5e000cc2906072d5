"""Phantom truth as classify-stage inputs: truth-derived candidates and a truth anatomy.

Truth candidates isolate classification from detection; the truth anatomy (the phantom's own
anatomy labels on the work grid) isolates it from classical anatomy's errors. Shared by
tests/test_classify.py, tests/test_summary.py and benchmarks/accuracy_classification.py.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from cementscan.anatomy.grid import make_work_grid
from cementscan.anatomy.lungs import lung_info
from cementscan.anatomy.model import Anatomy, Vertebra
from cementscan.cement.candidates import Candidate, Candidates
from cementscan.io.volume import CTVolume
from cementscan.io.write import to_sitk
from cementscan.synth import PhantomSpec
from cementscan.synth.phantom import Phantom, PhantomSeries


def truth_candidates(series: PhantomSeries) -> Candidates:
    """Connected components (26-connected) of the series' truth voxels, measured like the
    detector's candidates."""
    ct = series.ct
    lab, _count = ndimage.label(series.truth_labels > 0, structure=np.ones((3, 3, 3), bool))
    labels = lab.astype(np.int32)
    found: list[Candidate] = []
    for n, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == n
        ijk = np.argwhere(mask) + np.array([s.start for s in box])
        lps = ct.index_to_lps(ijk)
        values = ct.hu[box][mask].astype(float)
        centred = lps - lps.mean(axis=0)
        voxel = min(ct.spacing_mm)
        if len(lps) > 1:
            _, _, axes = np.linalg.svd(centred, full_matrices=False)
            spans = np.ptp(centred @ axes.T, axis=0) + voxel
            length, diameter = float(spans[0]), float(spans[1]) if len(spans) > 1 else voxel
        else:
            length = diameter = voxel
        c, lo, hi = lps.mean(axis=0), lps.min(axis=0), lps.max(axis=0)
        found.append(
            Candidate(
                label=n,
                voxel_count=len(lps),
                volume_ml=len(lps) * ct.voxel_volume_ml,
                centroid_lps_mm=(float(c[0]), float(c[1]), float(c[2])),
                bbox_lps_mm=(
                    (float(lo[0]), float(lo[1]), float(lo[2])),
                    (float(hi[0]), float(hi[1]), float(hi[2])),
                ),
                length_mm=length,
                max_diameter_mm=diameter,
                mean_hu=float(values.mean()),
                max_hu=float(values.max()),
            )
        )
    return Candidates(labels, tuple(found))


def _on_grid(labels: np.ndarray, ct: CTVolume, reference: sitk.Image) -> np.ndarray:
    image = to_sitk(labels.astype(np.uint16), ct)
    resampled = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16
    )
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)


def truth_anatomy(phantom: Phantom, index: int) -> Anatomy:
    """The phantom's anatomy labels as an Anatomy on the work grid (levels known, anchor sacrum)."""
    series = phantom.series[index]
    grid = make_work_grid(series.ct)
    on_grid = _on_grid(series.anatomy_labels, series.ct, grid.reference_image())
    ids = {name: i for i, name in phantom.anatomy_names.items()}

    def union(*names: str) -> np.ndarray:
        wanted = [ids[n] for n in names if n in ids]
        return np.isin(on_grid, wanted)

    masks: dict[str, np.ndarray] = {}
    for name in ids:
        if name.startswith(("vertebral_body_", "disc_")):
            mask = on_grid == ids[name]
            if mask.any():
                masks[name] = mask
    groups = {
        "spinal_canal": ("spinal_canal",),
        "foramina": tuple(n for n in ids if n.startswith("foramen_")),
        "posterior_elements": tuple(n for n in ids if n.startswith("posterior_elements_")),
        "lung_right": ("lung_right",),
        "lung_left": ("lung_left",),
        "pulmonary_vessels": ("pulmonary_arteries",),
        "heart": ("heart", "right_atrium", "right_ventricle"),
        "right_heart": ("right_atrium", "right_ventricle"),
        "ivc": ("ivc",),
        "svc": ("svc",),
        "azygos": ("azygos",),
        "aorta": ("aorta",),
        "body": tuple(n for n in ids),
    }
    for name, members in groups.items():
        mask = union(*members)
        if mask.any():
            masks[name] = mask
    vertebrae = []
    for name, mask in masks.items():
        if name.startswith("vertebral_body_"):
            lps = grid.to_lps(np.argwhere(mask))
            c = lps.mean(axis=0)
            vertebrae.append(
                Vertebra(
                    level=name.removeprefix("vertebral_body_"),
                    body_centroid_lps_mm=(float(c[0]), float(c[1]), float(c[2])),
                    z_range_mm=(float(lps[:, 2].min()), float(lps[:, 2].max())),
                )
            )
    vertebrae.sort(key=lambda v: -v.body_centroid_lps_mm[2])
    canal = masks.get("spinal_canal")
    centreline = np.zeros((0, 3))
    if canal is not None:
        points = []
        for k in np.flatnonzero(canal.any(axis=(0, 1))):
            xs, ys = np.nonzero(canal[:, :, k])
            points.append(grid.to_lps([xs.mean(), ys.mean(), float(k)]))
        centreline = np.asarray(points)
    lungs = {}
    for side in ("right", "left"):
        if f"lung_{side}" in masks:
            filled = masks[f"lung_{side}"] | (
                masks.get("pulmonary_vessels", np.zeros(grid.shape, bool))
                & _side_of_grid(grid, side)
            )
            masks[f"lung_{side}"] = filled
            # The phantom's own hila (central vs peripheral is judged against them).
            h = phantom.vessels.hila[side]
            hilum = (float(h[0]), float(h[1]), float(h[2]))
            lungs[side] = replace(lung_info(side, filled, grid), hilum_lps_mm=hilum)
    return Anatomy(
        grid=grid,
        masks=masks,
        vertebrae=tuple(vertebrae),
        level_anchor="sacrum",
        level_confidence=1.0,
        canal_centerline_lps_mm=centreline,
        lungs=lungs,
        contrast_phase="native",
        coverage=tuple(series.coverage),
        source="classical",
    )


def _side_of_grid(grid: Any, side: str) -> np.ndarray:
    xs = grid.to_lps(np.column_stack([np.arange(grid.shape[0]), np.zeros((grid.shape[0], 2))]))
    right = xs[:, 0] < 0.0  # the phantom's midline is x = 0
    column = right if side == "right" else ~right
    return np.broadcast_to(column[:, None, None], grid.shape)


def match_objects(
    phantom: Phantom, index: int, finding_labels: np.ndarray
) -> dict[int, tuple[int, float]]:
    """Truth object id -> (finding id with the largest voxel overlap, overlap fraction) for the
    objects present in series ``index``."""
    truth = phantom.series[index].truth_labels
    out: dict[int, tuple[int, float]] = {}
    both = (truth > 0) & (finding_labels > 0)
    pairs = np.stack([truth[both], finding_labels[both]], axis=1)
    if len(pairs) == 0:
        return out
    keys, counts = np.unique(pairs, axis=0, return_counts=True)
    sizes = dict(zip(*np.unique(truth[truth > 0], return_counts=True), strict=True))
    for (obj, fid), count in zip(keys.tolist(), counts.tolist(), strict=True):
        frac = count / sizes[obj]
        if obj not in out or frac > out[obj][1]:
            out[obj] = (fid, frac)
    return out


LEAK_CHOICES = ("disc", "epidural", "foraminal", "paravertebral_soft_tissue", "paravertebral_vein")


def random_spec(seed: int, slice_mm: float = 3.0, pixel_mm: float = 2.0) -> PhantomSpec:
    """A seeded random phantom: 1-3 treated levels, 0-4 leaks, optional IVC cast, azygos leak,
    right-heart cement and 0-12 emboli, confounders; one torso series."""
    rng = random.Random(seed)
    thoracic = [f"T{n}" for n in range(5, 13)]
    lumbar = [f"L{n}" for n in range(1, 5)]
    levels = rng.sample(thoracic + lumbar, rng.randint(1, 3))
    intravertebral = [
        {"level": lv, "volume_ml": round(rng.uniform(2.5, 5.0), 1),
         "side": rng.choice(["right", "left", "midline"])}
        for lv in levels
    ]  # fmt: skip
    leaks: list[dict[str, Any]] = []
    used: set[tuple[str, str]] = set()
    for _ in range(rng.randint(0, 4)):
        level = rng.choice(levels)
        category = rng.choice(LEAK_CHOICES)
        if (level, category) in used:
            continue
        used.add((level, category))
        side = "midline" if category == "epidural" else rng.choice(["right", "left"])
        leak: dict[str, Any] = {"category": category, "level": level, "side": side}
        if category == "disc":
            leak["direction"] = rng.choice(["caudal", "cranial"])
        if category == "paravertebral_vein":
            leak["side"] = "right"
            order = [*thoracic, *lumbar]
            reachable = [lv for lv in ("T12", "L1", "L2") if order.index(lv) <= order.index(level)]
            if level.startswith("L") and reachable and rng.random() < 0.5:
                leak["ivc_to_level"] = rng.choice(reachable)
        leaks.append(leak)
    thoracic_treated = [lv for lv in levels if lv.startswith("T")]
    if thoracic_treated and rng.random() < 0.4:
        leaks.append({"category": "azygos", "level": thoracic_treated[0], "side": "right"})
    count = rng.choice([0, 0, 1, 2, 3, 5, 7, 12])
    emboli: dict[str, Any] = {"count": count}
    if count:
        emboli.update(
            side=rng.choice(["bilateral", "bilateral", "right", "left"]),
            right_fraction=round(rng.uniform(0.2, 0.8), 2),
            zone=rng.choice(["lower", "middle", "upper", "diffuse"]),
            central=rng.choice([0, 0, 1]) if count else 0,
        )
    data: dict[str, Any] = {
        "seed": seed,
        "slice_mm": slice_mm,
        "pixel_mm": pixel_mm,
        "series": [{"z_from_level": "apex", "z_to_level": "pelvis", "slice_mm": slice_mm}],
        "intravertebral": intravertebral,
        "leaks": leaks,
        "emboli": emboli,
        "confounders": {
            "aortic_calcifications": rng.randint(0, 3),
            "granulomas": rng.randint(0, 2),
        },
    }
    if rng.random() < 0.25:
        data["right_heart"] = {"chamber": rng.choice(["right_atrium", "right_ventricle"]),
                               "shape": rng.choice(["linear", "nodular"])}  # fmt: skip
    return PhantomSpec.from_dict(data)
