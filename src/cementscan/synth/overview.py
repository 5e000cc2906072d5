"""Overview PNG of a phantom series: coronal and sagittal MIPs and an axial slice, truth outlined."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cementscan.atomic import atomic_path

if TYPE_CHECKING:
    from cementscan.io.volume import CTVolume
    from cementscan.synth.phantom import Phantom


def _to_lps(arr: np.ndarray, ct: CTVolume) -> np.ndarray:
    """Undo a re-orientation so that axes are (x=L, y=P, z=S) again for display."""
    src = [ct.lps_axis_of(a) for a in range(3)]
    out = arr
    for a in range(3):
        if ct.direction[src[a], a] < 0:
            out = np.flip(out, axis=a)
    return np.transpose(out, np.argsort(src))


def write_overview(phantom: Phantom, index: int, path: str | Path) -> Path:
    """Coronal MIP (patient's right on the image left, head up), sagittal MIP, axial slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = phantom.series[index]
    ct = s.ct
    hu = _to_lps(ct.hu, ct)
    truth = _to_lps(s.truth_labels, ct)
    conf = _to_lps(s.confounder_labels, ct)
    anatomy = _to_lps(s.anatomy_labels, ct)
    col_of = {ct.lps_axis_of(c): c for c in range(3)}
    sp = [float(ct.spacing_mm[col_of[a]]) for a in range(3)]
    # Choose the axial slice: the largest truth object in this series, else mid-lumbar.
    objs = [o for o in phantom.objects if index in o.series_indices]
    z_axis_world0 = min(ct.index_to_lps([0, 0, 0])[2], ct.index_to_lps(np.array(ct.shape) - 1)[2])
    ivc_id = next((o.id for o in objs if o.category == "ivc"), None)
    pce = [o for o in objs if o.category == "pulmonary_artery"]
    if pce:
        kz = round((pce[0].centroid_lps_mm[2] - z_axis_world0) / sp[2])
    elif ivc_id is not None:
        kz = int(np.argmax((truth == ivc_id).sum(axis=(0, 1))))
    elif objs:
        big = max(objs, key=lambda o: o.volume_ml)
        kz = round((big.centroid_lps_mm[2] - z_axis_world0) / sp[2])
    else:
        kz = hu.shape[2] // 2
    kz = int(np.clip(kz, 0, hu.shape[2] - 1))

    fig, axes = plt.subplots(1, 3, figsize=(15, 7), gridspec_kw={"width_ratios": [1.3, 1.0, 1.0]})
    cor = hu.max(axis=1).T[::-1]  # rows: superior at top; columns: x (patient's right on the left)
    extent_c = (0, hu.shape[0] * sp[0], 0, hu.shape[2] * sp[2])
    axes[0].imshow(cor, cmap="gray", vmin=-200, vmax=1800, extent=extent_c, interpolation="nearest")
    _outline(axes[0], truth.max(axis=1).T[::-1] > 0, extent_c, "red")
    _outline(axes[0], conf.max(axis=1).T[::-1] > 0, extent_c, "yellow")
    axes[0].set_title("coronal MIP (R on left) — cement red, look-alikes yellow")
    sag = hu.max(axis=0).T[::-1]  # anterior (small y) on the left
    extent_s = (0, hu.shape[1] * sp[1], 0, hu.shape[2] * sp[2])
    axes[1].imshow(sag, cmap="gray", vmin=-200, vmax=1800, extent=extent_s, interpolation="nearest")
    _outline(axes[1], truth.max(axis=0).T[::-1] > 0, extent_s, "red")
    axes[1].set_title("sagittal MIP (anterior on left)")
    ax_img = hu[:, :, kz].T  # rows: y (anterior at top), columns: x (right on the left)
    extent_a = (0, hu.shape[0] * sp[0], hu.shape[1] * sp[1], 0)
    axes[2].imshow(
        ax_img, cmap="gray", vmin=-1000, vmax=1500, extent=extent_a, interpolation="nearest"
    )
    _outline(axes[2], truth[:, :, kz].T > 0, extent_a, "red", flip=False)
    _outline(axes[2], conf[:, :, kz].T > 0, extent_a, "yellow", flip=False)
    names = phantom.anatomy_names
    for name, color in (("ivc", "cyan"), ("aorta", "magenta"), ("azygos", "lime")):
        ids = [i for i, n in names.items() if n == name]
        if ids:
            _outline(axes[2], np.isin(anatomy[:, :, kz].T, ids), extent_a, color, flip=False)
    z_mm = z_axis_world0 + kz * sp[2]
    axes[2].set_title(f"axial z={z_mm:.0f} mm (R on left; IVC cyan, aorta magenta, azygos green)")
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"{phantom.spec.preset or 'custom'} seed {phantom.spec.seed} — series {index}: "
                 f"{s.description} ({len(objs)} cement objects)")  # fmt: skip
    fig.tight_layout()
    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
    finally:
        plt.close(fig)
    return target


def _outline(
    ax: object, mask: np.ndarray, extent: tuple[float, ...], color: str, flip: bool = True
) -> None:
    if not mask.any():
        return
    origin = "upper"
    ax.contour(mask.astype(float), levels=[0.5], colors=[color], linewidths=0.8, extent=extent,  # type: ignore[attr-defined]
               origin=origin)  # fmt: skip
