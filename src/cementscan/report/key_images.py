"""Key images of a study: slab MIPs, axial views of leaks, radiograph-like projections, 3-D spine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Patch
from scipy import ndimage

from cementscan.io.volume import CTVolume

# Fixed legend: one colour per category (RGB 0-1), the same in every image and in report.html.
CATEGORY_COLOURS: dict[str, tuple[float, float, float]] = {
    "intravertebral": (1.00, 0.84, 0.00),  # gold: the intended cement
    "disc": (1.00, 0.50, 0.00),
    "epidural": (0.90, 0.00, 0.90),
    "foraminal": (0.60, 0.20, 1.00),
    "paravertebral_soft_tissue": (0.65, 0.45, 0.20),
    "paravertebral_vein": (0.00, 0.90, 0.90),
    "azygos": (0.20, 0.60, 1.00),
    "ivc": (0.10, 0.35, 1.00),
    "svc": (0.40, 0.75, 1.00),
    "right_heart": (1.00, 0.10, 0.10),
    "pulmonary_artery": (0.10, 0.95, 0.20),
    "other": (1.00, 0.40, 0.70),
}
CATEGORY_LABELS: dict[str, str] = {
    "intravertebral": "intravertebral (treated body)",
    "disc": "disc",
    "epidural": "epidural / spinal canal",
    "foraminal": "neural foramen",
    "paravertebral_soft_tissue": "paravertebral soft tissue",
    "paravertebral_vein": "paravertebral vein",
    "azygos": "azygos vein",
    "ivc": "inferior vena cava",
    "svc": "superior vena cava",
    "right_heart": "right heart",
    "pulmonary_artery": "pulmonary artery (PCE)",
    "other": "other extra-osseous",
}
SHORT_CATEGORY: dict[str, str] = {
    "intravertebral": "vertebral body",
    "disc": "disc",
    "epidural": "canal",
    "foraminal": "foramen",
    "paravertebral_soft_tissue": "paravert. soft tissue",
    "paravertebral_vein": "paravert. vein",
    "azygos": "azygos",
    "ivc": "IVC",
    "svc": "SVC",
    "right_heart": "right heart",
    "pulmonary_artery": "PA",
    "other": "other",
}
# Extra-osseous cement is painted over the vertebral cement so that a leak is never hidden.
PAINT_ORDER = ("intravertebral", *[c for c in CATEGORY_COLOURS if c != "intravertebral"])
BONE_HU = 200.0
DISPLAY_MM = 1.0  # output pixel pitch of slab/projection images (mm per pixel, before capping)
MAX_SIDE_PX = 900  # cap the longer side of an image so the HTML stays small and fast
SURFACE_STEP_MM = 4.0  # grid of the 3-D rendering: keeps marching cubes + plot_trisurf ~1 s


@dataclass(frozen=True)
class KeyImage:
    """One key image: an RGB picture with its title; ``kind`` says which view it is."""

    title: str
    rgb: np.ndarray  # uint8, H x W x 3
    kind: str  # coronal_mip | sagittal_mip | axial | frontal | lateral | surface_3d
    caption: str = ""
    series_index: int = 0
    finding_ids: tuple[int, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class LpsGrid:
    """A volume permuted/flipped so that its axes run toward L, P, S (exact for axis-aligned scans)."""

    hu: np.ndarray  # [x, y, z]
    labels: np.ndarray  # [x, y, z], finding ids
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]  # LPS mm of voxel [0, 0, 0]

    def coord(self, axis: int) -> np.ndarray:
        return self.origin[axis] + self.spacing[axis] * np.arange(self.hu.shape[axis])

    def index(self, axis: int, mm: float) -> int:
        i = int(round((mm - self.origin[axis]) / self.spacing[axis]))
        return int(np.clip(i, 0, self.hu.shape[axis] - 1))

    def extent(self, axis: int) -> tuple[float, float]:
        """Edges (not centres) of the grid along ``axis`` in mm, for imshow extents."""
        c = self.coord(axis)
        h = self.spacing[axis] / 2
        return float(c[0] - h), float(c[-1] + h)


def to_lps_grid(volume: CTVolume, labels: np.ndarray | None) -> LpsGrid:
    """Reorient by permuting and flipping index axes to LPS: the direction matrix decides, never
    the index order. Oblique scans are shown on their nearest LPS axes (as DICOMOrient does)."""
    direction = np.asarray(volume.direction, float)
    perm = [volume.index_axis_along(axis) for axis in range(3)]
    if sorted(perm) != [0, 1, 2]:  # degenerate obliquity: fall back to the column-wise choice
        cols = [volume.lps_axis_of(c) for c in range(3)]
        perm = [cols.index(a) for a in range(3)]
    hu = np.transpose(volume.hu, perm)
    lab = np.zeros(volume.shape, np.int32) if labels is None else np.asarray(labels)
    if lab.shape != volume.shape:
        raise ValueError(f"label map shape {lab.shape} differs from the CT's {volume.shape}")
    lab = np.transpose(lab, perm)
    start = [0.0, 0.0, 0.0]
    for axis, src in enumerate(perm):
        if direction[axis, src] < 0:  # this index axis runs toward R/A/I: flip it
            hu = np.flip(hu, axis)
            lab = np.flip(lab, axis)
            start[src] = volume.shape[src] - 1
    origin = volume.index_to_lps(start)
    spacing = tuple(float(volume.spacing_mm[p]) for p in perm)
    return LpsGrid(
        np.ascontiguousarray(hu),
        np.ascontiguousarray(lab),
        (spacing[0], spacing[1], spacing[2]),
        (float(origin[0]), float(origin[1]), float(origin[2])),
    )


def _finding_maps(findings: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(f["id"]): f for f in findings.get("findings", [])}


def _category_masks(labels: np.ndarray, by_id: dict[int, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Category -> boolean mask; ids missing from findings.json are shown as 'other'."""
    out: dict[str, np.ndarray] = {}
    ids = [int(v) for v in np.unique(labels) if v != 0]
    for i in ids:
        cat = by_id.get(i, {}).get("category", "other")
        cat = cat if cat in CATEGORY_COLOURS else "other"
        m = labels == i
        out[cat] = m if cat not in out else (out[cat] | m)
    return out


def _grey(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    g = np.clip((img.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    return np.repeat(g[..., None], 3, axis=2)


def _paint(rgb: np.ndarray, masks: dict[str, Any], alpha: float = 0.85) -> list[str]:
    """Colour each category's 2-D mask into ``rgb`` in place; returns the categories shown."""
    shown = []
    for cat in PAINT_ORDER:
        m = masks.get(cat)
        if m is None or not m.any():
            continue
        # Dilate tiny projections a little so a 2 mm embolus stays visible at report size.
        if m.sum() < 40:
            m = ndimage.binary_dilation(m, iterations=1)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(CATEGORY_COLOURS[cat])
        shown.append(cat)
    return shown


def _figure_rgb(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _image_figure(
    img: np.ndarray,
    extent: tuple[float, float, float, float],
    origin: Literal["upper", "lower"],
    px_per_mm: float = 1.0 / DISPLAY_MM,
) -> tuple[Figure, Any]:
    """A figure whose axes fill it exactly, so pixel columns map linearly to patient mm."""
    width_mm = abs(extent[1] - extent[0])
    height_mm = abs(extent[3] - extent[2])
    scale = min(px_per_mm, MAX_SIDE_PX / max(width_mm, height_mm))
    dpi = 100
    fig = Figure(figsize=(width_mm * scale / dpi, height_mm * scale / dpi), dpi=dpi)
    fig.patch.set_facecolor("black")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img, extent=extent, origin=origin, interpolation="bilinear", aspect="auto")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    return fig, ax


def _orientation_letters(ax: Any, left: str, right: str, top: str = "", bottom: str = "") -> None:
    kw: dict[str, Any] = dict(
        transform=ax.transAxes, color="white", fontsize=15, fontweight="bold", zorder=5
    )
    ax.text(0.012, 0.5, left, ha="left", va="center", **kw)
    ax.text(0.988, 0.5, right, ha="right", va="center", **kw)
    if top:
        ax.text(0.5, 0.985, top, ha="center", va="top", **kw)
    if bottom:
        ax.text(0.5, 0.015, bottom, ha="center", va="bottom", **kw)


def _legend(ax: Any, shown: Sequence[str]) -> None:
    if not shown:
        return
    handles = [Patch(color=CATEGORY_COLOURS[c], label=CATEGORY_LABELS[c]) for c in shown]
    leg = ax.legend(
        handles=handles,
        loc="upper left",
        fontsize=8,
        framealpha=0.6,
        borderpad=0.3,
        labelspacing=0.2,
    )
    leg.set_zorder(6)


def _level_marks(
    ax: Any, marks: Sequence[tuple[float, str]], x_right: float, x_span: float
) -> None:
    """Level names at their z on the right edge (z is the vertical data axis)."""
    placed: list[float] = []
    for z, text in sorted(marks, key=lambda m: m[0]):
        if any(abs(z - p) < 8.0 for p in placed):  # keep labels from overprinting each other
            continue
        placed.append(z)
        ax.annotate(
            text,
            xy=(x_right - 0.09 * x_span, z),
            xytext=(x_right - 0.015 * x_span, z),
            color="yellow",
            fontsize=10,
            fontweight="bold",
            ha="right",
            va="center",
            arrowprops=None,
            zorder=5,
        )


def _spine_xy(
    grid: LpsGrid, by_id: dict[int, dict[str, Any]], series_index: int
) -> tuple[float, float]:
    """Spine column (x, y) in mm: treated bodies when present, else the most constant bone column."""
    cents = [
        f["centroid_lps_mm"]
        for f in by_id.values()
        if f.get("category") == "intravertebral" and f.get("series_index") == series_index
    ]
    if cents:
        return float(np.median([c[0] for c in cents])), float(np.median([c[1] for c in cents]))
    step = max(1, int(round(4.0 / min(grid.spacing[:2]))))
    bone = grid.hu[::step, ::step, :] >= BONE_HU
    frac = ndimage.uniform_filter(bone.mean(axis=2).astype(np.float32), size=3)
    ix, iy = np.unravel_index(int(np.argmax(frac)), frac.shape)
    return float(grid.coord(0)[ix * step]), float(grid.coord(1)[iy * step])


def _slab(grid: LpsGrid, axis: int, lo_mm: float, hi_mm: float) -> slice:
    a, b = sorted((grid.index(axis, lo_mm), grid.index(axis, hi_mm)))
    return slice(a, b + 1)


def _level_marks_for(
    findings: dict[str, Any], by_id: dict[int, dict[str, Any]], z_lo: float, z_hi: float
) -> list[tuple[float, str]]:
    marks: list[tuple[float, str]] = []
    for f in by_id.values():
        z = float(f["centroid_lps_mm"][2])
        if f.get("category") == "intravertebral" and f.get("level") and z_lo <= z <= z_hi:
            marks.append((z, str(f["level"])))
    ivc = findings.get("summary", {}).get("ivc", {})
    tops = [f for f in by_id.values() if f.get("category") == "ivc"]
    if ivc.get("cranial_extent_level") and tops:
        z = max(float(f["bbox_lps_mm"][1][2]) for f in tops)
        if z_lo <= z <= z_hi:
            marks.append((z, f"IVC top {ivc['cranial_extent_level']}"))
    return marks


def _mip_pair(
    grid: LpsGrid,
    findings: dict[str, Any],
    by_id: dict[int, dict[str, Any]],
    series_index: int,
    region: str,
) -> list[KeyImage]:
    """Coronal (MIP along y) and sagittal (MIP along x) thick slabs of one region."""
    sx, sy = _spine_xy(grid, by_id, series_index)
    mine = [f for f in by_id.values() if f.get("series_index") == series_index]
    if region == "spine":
        x_lo, x_hi, y_lo, y_hi = sx - 45.0, sx + 45.0, sy - 55.0, sy + 35.0
        extra = [f for f in mine if f["category"] not in ("pulmonary_artery", "right_heart")]
        window = (-250.0, 1500.0)
    else:
        x_lo, x_hi = grid.extent(0)
        y_lo, y_hi = sy - 120.0, sy - 10.0  # the lungs and pulmonary arteries, not the back
        extra = [f for f in mine if f["category"] in ("pulmonary_artery", "right_heart", "svc")]
        window = (-900.0, 1300.0)
    for f in extra:  # widen the slab so every finding of the region lies inside it
        (bx0, by0, _), (bx1, by1, _) = f["bbox_lps_mm"]
        x_lo, x_hi = min(x_lo, bx0 - 5), max(x_hi, bx1 + 5)
        y_lo, y_hi = min(y_lo, by0 - 5), max(y_hi, by1 + 5)
    z0, z1 = grid.extent(2)
    marks = _level_marks_for(findings, by_id, z0, z1)
    name = "spine and IVC" if region == "spine" else "chest"
    out = []
    for axis, kind in ((1, "coronal_mip"), (0, "sagittal_mip")):
        sl: list[slice] = [slice(None)] * 3
        # Coronal: a slab in y (AP) over the full width; sagittal: a slab in x over the full depth.
        sl[axis] = _slab(grid, 1, y_lo, y_hi) if axis == 1 else _slab(grid, 0, x_lo, x_hi)
        hu = grid.hu[tuple(sl)].max(axis=axis)  # [other horizontal axis, z]
        lab = grid.labels[tuple(sl)]
        masks = {k: v.any(axis=axis).T for k, v in _category_masks(lab, by_id).items()}
        rgb = _grey(hu.T, *window)  # rows = z (origin lower), columns = x or y
        shown = _paint(rgb, masks)
        h_axis = 0 if axis == 1 else 1
        h0, h1 = grid.extent(h_axis)
        fig, ax = _image_figure(rgb, (h0, h1, z0, z1), origin="lower")
        if axis == 1:
            _orientation_letters(ax, "R", "L", "S", "I")
        else:
            _orientation_letters(ax, "A", "P", "S", "I")
        _level_marks(ax, marks, h1, h1 - h0)
        _legend(ax, shown)
        thick = (y_hi - y_lo) if axis == 1 else (x_hi - x_lo)
        view = "Coronal" if axis == 1 else "Sagittal"
        out.append(
            KeyImage(
                title=f"{view} MIP, {name} (series {series_index + 1})",
                rgb=_figure_rgb(fig),
                kind=kind,
                caption=f"{thick:.0f} mm thick-slab maximum-intensity projection; cement coloured "
                "by category.",
                series_index=series_index,
                meta={"region": region, "extent_mm": (h0, h1, z0, z1)},
            )
        )
    return out


def _projections(
    grid: LpsGrid, by_id: dict[int, dict[str, Any]], series_index: int
) -> list[KeyImage]:
    """Radiograph-like frontal and lateral views: mean attenuation along y and along x."""
    mu = np.clip(grid.hu.astype(np.float32) + 1000.0, 0.0, None)
    out = []
    z0, z1 = grid.extent(2)
    masks3 = _category_masks(grid.labels, by_id)
    for axis, kind, letters in ((1, "frontal", ("R", "L")), (0, "lateral", ("A", "P"))):
        proj = mu.mean(axis=axis).T  # rows z, columns x (frontal) or y (lateral)
        body = proj[proj > np.percentile(proj, 5)]
        lo, hi = np.percentile(body, [2, 99.7]) if body.size else (0.0, 1.0)
        rgb = _grey(proj, float(lo), float(max(hi, lo + 1)))
        masks = {k: v.any(axis=axis).T for k, v in masks3.items()}
        shown = _paint(rgb, masks, alpha=0.9)
        h_axis = 0 if axis == 1 else 1
        h0, h1 = grid.extent(h_axis)
        fig, ax = _image_figure(rgb, (h0, h1, z0, z1), origin="lower")
        _orientation_letters(ax, *letters)
        _legend(ax, shown)
        out.append(
            KeyImage(
                title=f"{kind.capitalize()} projection (series {series_index + 1})",
                rgb=_figure_rgb(fig),
                kind=kind,
                caption="Radiograph-like mean-attenuation projection of the whole scan; cement "
                "highlighted by category.",
                series_index=series_index,
                meta={"extent_mm": (h0, h1, z0, z1)},
            )
        )
    return out


def _finding_label(f: dict[str, Any]) -> str:
    parts = [f"#{f['id']} {SHORT_CATEGORY.get(f['category'], f['category'])}"]
    if f.get("yeom_type"):
        parts.append(f"type {f['yeom_type']}")
    if f.get("level"):
        parts.append(str(f["level"]))
    side = f.get("side")
    if side and side != "midline":
        parts.append(side[0].upper())
    if f.get("lung_zone"):
        parts.append(f"{f['lung_zone']} zone")
    return ", ".join(parts)


def _axial(grid: LpsGrid, f: dict[str, Any], series_index: int) -> KeyImage:
    """The axial slice through a finding (the one holding most of it), outlined and labelled."""
    fid = int(f["id"])
    mask = grid.labels == fid
    per_z = mask.sum(axis=(0, 1))
    k = int(np.argmax(per_z)) if per_z.any() else grid.index(2, float(f["centroid_lps_mm"][2]))
    lung = f["category"] in ("pulmonary_artery", "right_heart", "svc", "azygos")
    window = (-1100.0, 600.0) if lung else (-250.0, 1250.0)
    img = grid.hu[:, :, k].T  # rows y (anterior at top), columns x (patient's right on the left)
    others = grid.labels[:, :, k].T
    xc, yc = grid.coord(0), grid.coord(1)
    body = np.argwhere(img > -500)
    if len(body):  # crop to the body plus a margin, so that the finding is shown larger
        (r0, c0), (r1, c1) = body.min(0), body.max(0)
        m = int(round(15.0 / grid.spacing[0]))
        rows = slice(max(0, r0 - m), min(img.shape[0], r1 + m + 1))
        cols = slice(max(0, c0 - m), min(img.shape[1], c1 + m + 1))
        img, others, xc, yc = img[rows, cols], others[rows, cols], xc[cols], yc[rows]
    rgb = _grey(img, *window)
    by_cat = {f["category"]: (others == fid)}
    _paint(rgb, by_cat, alpha=0.6)
    hx, hy = grid.spacing[0] / 2, grid.spacing[1] / 2
    x0, x1 = float(xc[0] - hx), float(xc[-1] + hx)
    y0, y1 = float(yc[0] - hy), float(yc[-1] + hy)
    fig, ax = _image_figure(rgb, (x0, x1, y1, y0), origin="upper", px_per_mm=2.0)
    m2 = others == fid
    if m2.any():
        ax.contour(xc, yc, m2.astype(float), levels=[0.5], colors="red", linewidths=1.2)
    cx, cy = float(f["centroid_lps_mm"][0]), float(f["centroid_lps_mm"][1])
    (bx0, by0, _), (bx1, by1, _) = f["bbox_lps_mm"]  # in-plane size: a cast's length is along z
    radius = float(np.clip(0.7 * max(bx1 - bx0, by1 - by0), 8.0, 40.0))
    ax.add_patch(Circle((cx, cy), radius, fill=False, color="red", lw=1.8, zorder=4))
    # Put the label on the side of the circle with more room.
    above = cy - radius - 4 > y0 + 0.12 * (y1 - y0)
    ax.text(
        cx,
        cy - radius - 3 if above else cy + radius + 3,
        _finding_label(f),
        color="yellow",
        fontsize=11,
        fontweight="bold",
        ha="center",
        va="bottom" if above else "top",
        zorder=5,
        bbox=dict(facecolor="black", alpha=0.55, lw=0, pad=1.5),
    )
    _orientation_letters(ax, "R", "L", "A", "P")
    z = float(grid.coord(2)[k])
    return KeyImage(
        title=f"Axial, finding #{fid}: {CATEGORY_LABELS.get(f['category'], f['category'])}",
        rgb=_figure_rgb(fig),
        kind="axial",
        caption=f"Series {series_index + 1}, z = {z:.1f} mm; "
        + ("lung window" if lung else "wide (bone) window")
        + "; the finding is outlined in red.",
        series_index=series_index,
        finding_ids=(fid,),
    )


def _block_reduce(arr: np.ndarray, factors: tuple[int, int, int], how: str) -> np.ndarray:
    sx, sy, sz = (s // f * f for s, f in zip(arr.shape, factors, strict=True))
    a = arr[:sx, :sy, :sz].reshape(
        sx // factors[0], factors[0], sy // factors[1], factors[1], sz // factors[2], factors[2]
    )
    return a.max(axis=(1, 3, 5)) if how == "max" else a.mean(axis=(1, 3, 5), dtype=np.float32)


def _surface(grid: LpsGrid, by_id: dict[int, dict[str, Any]], series_index: int) -> KeyImage | None:
    """Anterior 3-D surface view of the spine (bone >= BONE_HU) with cement coloured."""
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3-D projection)
    from skimage.measure import marching_cubes

    sx, sy = _spine_xy(grid, by_id, series_index)
    xs = _slab(grid, 0, sx - 55.0, sx + 55.0)
    ys = _slab(grid, 1, sy - 45.0, sy + 55.0)
    mine = [
        f
        for f in by_id.values()
        if f.get("series_index") == series_index
        and f["category"] not in ("pulmonary_artery", "right_heart")
    ]
    for f in mine:  # include the leaks (an IVC cast lies anterior-right of the spine)
        (bx0, by0, _), (bx1, by1, _) = f["bbox_lps_mm"]
        xs = slice(min(xs.start, grid.index(0, bx0 - 5)), max(xs.stop, grid.index(0, bx1 + 5) + 1))
        ys = slice(min(ys.start, grid.index(1, by0 - 5)), max(ys.stop, grid.index(1, by1 + 5) + 1))
    hu = grid.hu[xs, ys, :]
    lab = grid.labels[xs, ys, :]
    factors = tuple(max(1, int(round(SURFACE_STEP_MM / s))) for s in grid.spacing)
    f3 = (factors[0], factors[1], factors[2])
    small = _block_reduce(hu.astype(np.float32), f3, "mean")
    if small.shape[0] < 3 or small.shape[1] < 3 or small.shape[2] < 3 or small.max() < BONE_HU:
        return None
    small = np.pad(small, 1, constant_values=-1000.0)  # closed surfaces at the crop's edges
    step = np.array([grid.spacing[i] * f3[i] for i in range(3)])
    origin = np.array([grid.coord(0)[xs][0], grid.coord(1)[ys][0], grid.coord(2)[0]]) - step
    verts, faces, _, _ = marching_cubes(small, level=BONE_HU, spacing=tuple(step))
    verts += origin
    lo = verts.min(axis=0)
    hi = verts.max(axis=0)
    # Size the figure to the spine's frontal extent so it fills the picture.
    aspect = float(np.clip((hi[2] - lo[2]) / max(hi[0] - lo[0], 1.0), 0.8, 3.0))
    fig = Figure(figsize=(7.0 / aspect + 1.2, 7.0), dpi=100)
    fig.patch.set_facecolor("black")
    ax: Any = fig.add_axes((0, 0, 1, 1), projection="3d")  # an Axes3D
    ax.set_facecolor("black")
    # Draw order fixed (bone, then cement on top): matplotlib's per-collection depth sorting
    # would otherwise hide the cement inside the translucent bone surface.
    ax.computed_zorder = False
    ax.plot_trisurf(
        verts[:, 0],
        verts[:, 1],
        faces,
        verts[:, 2],
        color=(0.85, 0.82, 0.75),
        lw=0,
        antialiased=False,
        shade=True,
        alpha=0.5,
        zorder=1,
    )
    shown = []
    small_lab = _block_reduce(lab, f3, "max")
    for cat, m in _category_masks(small_lab, by_id).items():
        if m.sum() < 2:
            continue
        m = np.pad(m, 1).astype(np.float32)
        v, fc, _, _ = marching_cubes(m, level=0.5, spacing=tuple(step))
        v += origin
        ax.plot_trisurf(
            v[:, 0],
            v[:, 1],
            fc,
            v[:, 2],
            color=CATEGORY_COLOURS[cat],
            lw=0,
            antialiased=False,
            shade=True,
            zorder=2,
        )
        shown.append(cat)
    # Viewer in front of the patient (at -y, anterior) looking posteriorly: x (toward the
    # patient's left) then runs to the viewer's right, as on a frontal radiograph.
    ax.view_init(elev=8, azim=-90)
    ax.set_box_aspect(tuple(np.maximum(hi - lo, 1.0)), zoom=1.6)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_axis_off()
    kw: dict[str, Any] = dict(color="white", fontsize=14, fontweight="bold")
    fig.text(0.03, 0.5, "R", ha="left", va="center", **kw)
    fig.text(0.97, 0.5, "L", ha="right", va="center", **kw)
    fig.text(0.5, 0.98, "S", ha="center", va="top", **kw)
    _legend(fig.axes[0], [c for c in PAINT_ORDER if c in shown])
    return KeyImage(
        title=f"3-D surface rendering of the spine, anterior view (series {series_index + 1})",
        rgb=_figure_rgb(fig),
        kind="surface_3d",
        caption=f"Bone >= {BONE_HU:.0f} HU on a {SURFACE_STEP_MM:.0f} mm grid (translucent); "
        "cement coloured by category.",
        series_index=series_index,
    )


def key_images(
    findings: dict[str, Any],
    label_maps: Sequence[np.ndarray] | np.ndarray | None,
    volumes: list[CTVolume],
) -> list[KeyImage]:
    """All key images of a study; ``label_maps[i]`` is series i's cement label map (finding ids)."""
    if label_maps is None:
        maps: list[np.ndarray | None] = [None] * len(volumes)
    elif isinstance(label_maps, np.ndarray):
        maps = [label_maps]
    else:
        maps = list(label_maps)
    if len(maps) != len(volumes):
        raise ValueError(f"{len(maps)} label maps for {len(volumes)} volumes")
    by_id = _finding_maps(findings)
    inputs = findings.get("inputs", [])
    timings: dict[str, float] = {}
    images: list[KeyImage] = []
    grids = [to_lps_grid(v, m) for v, m in zip(volumes, maps, strict=True)]
    for s, grid in enumerate(grids):
        cov = set(inputs[s].get("coverage", [])) if s < len(inputs) else set()
        t = time.perf_counter()
        if not cov or cov & {"lumbar_spine", "thoracic_spine", "abdomen", "pelvis"}:
            images += _mip_pair(grid, findings, by_id, s, "spine")
        if "chest" in cov:
            images += _mip_pair(grid, findings, by_id, s, "chest")
        timings["mip"] = timings.get("mip", 0.0) + time.perf_counter() - t
    for f in sorted(by_id.values(), key=lambda f: int(f["id"])):
        s = int(f.get("series_index", 0))
        if f["category"] != "intravertebral" and s < len(grids):
            images.append(_axial(grids[s], f, s))
    for s, grid in enumerate(grids):
        images += _projections(grid, by_id, s)
    # One 3-D view: the series holding the treated bodies (else the first).
    treated = [
        int(f.get("series_index", 0)) for f in by_id.values() if f["category"] == "intravertebral"
    ]
    s3 = min(treated) if treated else 0
    if grids:
        surf = _surface(grids[s3], by_id, s3)
        if surf is not None:
            images.append(surf)
    return images
