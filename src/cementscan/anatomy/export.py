"""Anatomy as files: anatomy.json, one label map with its names, and an overview PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cementscan.anatomy.model import Anatomy

# Later names overwrite earlier ones where masks overlap: specific structures win over the
# regions that contain them (right heart over heart, vessels over lungs, bodies over bone).
LABEL_ORDER_PREFIXES = (
    "body",
    "bone",
    "lung_",
    "pulmonary_vessels",
    "pulmonary_arteries",
    "pulmonary_veins",
    "heart",
    "right_heart",
    "aorta",
    "svc",
    "azygos",
    "ivc",
    "iliac_vein_",
    "posterior_elements",
    "sacrum",
    "vertebral_body_",
    "disc_",
    "foramen",
    "spinal_canal",
    "spinal_cord",
)


def _order_key(name: str) -> tuple[int, str]:
    for rank, prefix in enumerate(LABEL_ORDER_PREFIXES):
        if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
            return rank, name
    return len(LABEL_ORDER_PREFIXES), name


def label_map(anatomy: Anatomy) -> tuple[np.ndarray, dict[int, str]]:
    """One uint8/uint16 label map on the work grid and its id -> name table."""
    names = sorted(anatomy.masks, key=_order_key)
    dtype = np.uint8 if len(names) < 256 else np.uint16
    labels = np.zeros(anatomy.grid.shape, dtype)
    table: dict[int, str] = {}
    for label_id, name in enumerate(names, start=1):
        labels[anatomy.masks[name]] = label_id
        table[label_id] = name
    return labels, table


def _round(values: np.ndarray | tuple[float, ...]) -> list[float]:
    return [round(float(v), 2) for v in values]


def anatomy_json(anatomy: Anatomy) -> dict[str, Any]:
    """The content of anatomy.json (positions in LPS mm)."""
    return {
        "source": anatomy.source,
        "level_anchor": anatomy.level_anchor,
        "level_confidence": round(anatomy.level_confidence, 3),
        "vertebrae": [
            {
                "level": v.level,
                "body_centroid_lps_mm": _round(v.body_centroid_lps_mm),
                "z_range_mm": _round(v.z_range_mm),
                "has_ribs": v.has_ribs,
            }
            for v in anatomy.vertebrae
        ],
        "lungs": {
            side: {
                "volume_ml": round(info.volume_ml, 1),
                "z_range_mm": _round(info.z_range_mm),
                "hilum_lps_mm": None if info.hilum_lps_mm is None else _round(info.hilum_lps_mm),
                "fully_covered": info.fully_covered,
            }
            for side, info in anatomy.lungs.items()
        },
        "ivc": {"centerline_lps_mm": [_round(p) for p in anatomy.ivc_centerline_lps_mm]},
        "spinal_canal": {"centerline_lps_mm": [_round(p) for p in anatomy.canal_centerline_lps_mm]},
        "contrast_phase": anatomy.contrast_phase,
        "dense_contrast_veins": list(anatomy.dense_contrast_veins),
        "coverage": list(anatomy.coverage),
        "structures": sorted(anatomy.masks),
        "warnings": list(anatomy.warnings),
    }


def write_overview_png(anatomy: Anatomy, path: Path) -> Path:
    """Coronal and sagittal views through the spine with every structure outlined and levels named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cementscan.atomic import atomic_path

    grid = anatomy.grid
    labels, table = label_map(anatomy)
    if len(anatomy.canal_centerline_lps_mm):
        centre = np.median(grid.to_index(anatomy.canal_centerline_lps_mm), axis=0)
    else:
        centre = (np.asarray(grid.shape) - 1) / 2.0
    x_mid, y_mid = int(round(centre[0])), int(round(centre[1]))
    spacing = grid.spacing_mm
    low = grid.origin_lps_mm
    high = low + (np.asarray(grid.shape) - 1) * spacing
    fig, axes = plt.subplots(1, 2, figsize=(12, 8))
    colours = plt.get_cmap("tab20")
    views = (
        (
            "coronal (patient's right on the left)",
            grid.hu[:, y_mid, :],
            labels[:, y_mid, :],
            (low[0], high[0]),
            0,
        ),
        (
            "sagittal (anterior on the left)",
            grid.hu[x_mid, :, :],
            labels[x_mid, :, :],
            (low[1], high[1]),
            1,
        ),
    )
    for ax, (title, image, label_slice, (h0, h1), axis) in zip(axes, views, strict=True):
        extent = (h0, h1, low[2], high[2])
        ax.imshow(image.T, cmap="gray", vmin=-400, vmax=1200, origin="lower", extent=extent)
        for label_id in np.unique(label_slice):
            if label_id == 0:
                continue
            ax.contour(
                (label_slice == label_id).T.astype(float),
                levels=[0.5],
                colors=[colours(int(label_id) % 20)],
                linewidths=0.7,
                origin="lower",
                extent=extent,
            )
        for v in anatomy.vertebrae:
            if v.level:
                ax.text(
                    v.body_centroid_lps_mm[axis],
                    v.body_centroid_lps_mm[2],
                    v.level,
                    color="yellow",
                    fontsize=7,
                    ha="center",
                    va="center",
                )
        ax.set_title(title)
        ax.set_xlabel("x (mm, LPS)" if axis == 0 else "y (mm, LPS)")
        ax.set_ylabel("z (mm, LPS)")
    fig.suptitle(
        f"anatomy ({anatomy.source}); levels from {anatomy.level_anchor}, "
        f"confidence {anatomy.level_confidence:.2f}; phase {anatomy.contrast_phase}; "
        f"{len(table)} structures"
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
