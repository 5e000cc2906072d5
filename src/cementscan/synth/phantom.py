"""make_phantom / write_phantom: assemble the scene, render each series, write CT + truth."""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cementscan.findings.io import write_json_atomic
from cementscan.io.volume import CTVolume, SourceInfo
from cementscan.io.write import write_labels, write_volume
from cementscan.synth.cement import CementBuilder
from cementscan.synth.confounders import ConfounderBuilder
from cementscan.synth.render import Canvas, Grid, Scene, coverage
from cementscan.synth.spec import ORIENTATIONS_AXES, PhantomSpec, SeriesSpec
from cementscan.synth.torso import (
    HU_VISCERA,
    Layout,
    add_abdomen,
    add_body,
    add_heart,
    add_lungs,
    add_ribs,
    add_spine,
    build_layout,
)
from cementscan.synth.truth import TRUTH_SCHEMA, Confounder, TruthObject, summarize
from cementscan.synth.vessels import Vessels, add_great_vessels, build_vessels

HU_BLOOD = 40.0
HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass
class PhantomSeries:
    """One rendered series: the CT, its cement truth, confounder and anatomy label maps."""

    ct: CTVolume
    truth_labels: np.ndarray
    anatomy_labels: np.ndarray
    confounder_labels: np.ndarray
    z_range_lps_mm: tuple[float, float]
    coverage: tuple[str, ...]
    description: str


@dataclass
class Phantom:
    """A rendered phantom: its series, the truth objects and everything truth.json says."""

    spec: PhantomSpec
    series: tuple[PhantomSeries, ...]
    objects: list[TruthObject]
    confounders: list[Confounder]
    anatomy_names: dict[int, str]
    layout: Layout
    vessels: Vessels
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def truth_json(self, files: list[str] | None = None) -> dict[str, Any]:
        lay = self.layout
        multi = len(self.series) > 1
        series = []
        for n, s in enumerate(self.series):
            series.append({
                "index": n,
                "file": files[n] if files else (f"ct_{n}.nii.gz" if multi else "ct.nii.gz"),
                "series_uid": s.ct.source.series_uid,
                "description": s.description,
                "shape": list(s.ct.shape),
                "spacing_mm": [float(v) for v in s.ct.spacing_mm],
                "orientation": s.ct.orientation_code(),
                "z_range_lps_mm": [round(v, 2) for v in s.z_range_lps_mm],
                "coverage": list(s.coverage),
            })  # fmt: skip
        return {
            "schema": TRUTH_SCHEMA,
            "preset": self.spec.preset,
            "seed": self.spec.seed,
            "spec": self.spec.to_dict(),
            "study_uid": self.series[0].ct.source.study_uid,
            "frame_of_reference_uid": self.series[0].ct.source.frame_of_reference_uid,
            "series": series,
            "objects": [o.to_json() for o in self.objects],
            "confounders": [c.to_json() for c in self.confounders],
            "anatomy": {
                "labels": {str(k): v for k, v in sorted(self.anatomy_names.items())},
                "groups": {
                    "right_heart": ["right_atrium", "right_ventricle"],
                    "heart": ["heart", "right_atrium", "right_ventricle"],
                },
                "vertebrae": [
                    {
                        "level": v.level,
                        "body_centroid_lps_mm": [0.0, round(v.y_mm, 2), round(v.z_mm, 2)],
                        "z_range_lps_mm": [round(v.z_lo, 2), round(v.z_hi, 2)],
                        "canal_center_lps_mm": [0.0, round(v.canal_y_mm, 2), round(v.z_mm, 2)],
                    }
                    for v in lay.vertebrae.values()
                ],
                "rib_pairs": len(lay.rib_levels),
                "rib_levels": list(lay.rib_levels),
                "transitional": lay.transitional,
                "transitional_kind": "sacralized_L5" if lay.transitional else None,
                "ivc_top_level": _ivc_top_level(self.objects),
                "lung_zones": {
                    side: {
                        "z_min_mm": round(lo, 2),
                        "z_max_mm": round(hi, 2),
                        "rule": "thirds of the lung's craniocaudal extent",
                    }
                    for side, (lo, hi) in lay.lung_z.items()
                },
                "hila_lps_mm": {
                    k: [round(float(c), 2) for c in v] for k, v in self.vessels.hila.items()
                },
            },
            "summary": self.summary,
            "warnings": list(self.warnings),
        }


def _ivc_top_level(objects: list[TruthObject]) -> str | None:
    casts = [o for o in objects if o.category == "ivc"]
    return None if not casts else casts[-1].extra.get("cranial_level")


def _uid(*parts: object) -> str:
    """A deterministic DICOM UID (2.25.<int>) from the given parts."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _contrast_hu(spec: PhantomSpec) -> tuple[float, float, float, float, float]:
    """Aorta/left heart, veins, right heart, pulmonary arteries, liver HU by contrast phase."""
    phase = spec.confounders.contrast
    if phase == "arterial":
        return 320.0, 120.0, 220.0, 260.0, 70.0
    if phase == "portal_venous":
        return 170.0, 160.0, 160.0, 160.0, 110.0
    return HU_BLOOD, HU_BLOOD, HU_BLOOD, HU_BLOOD, 55.0


def build_scene(spec: PhantomSpec) -> tuple[Scene, Layout, Vessels, list[TruthObject], list[Confounder],
                                             list[tuple[int, float]], list[str]]:  # fmt: skip
    """The physical phantom: ordered layers plus its truth and confounder objects."""
    streams = np.random.SeedSequence(spec.seed).spawn(5)
    rng_anat, rng_cement, rng_conf = (np.random.default_rng(s) for s in streams[:3])
    layout = build_layout(transitional=spec.transitional, rib_pairs=spec.rib_pairs)
    vessels = build_vessels(layout, rng_anat)
    hu_art, hu_vein, hu_rh, hu_pa, _ = _contrast_hu(spec)
    scene = Scene()
    add_body(scene, layout)
    add_abdomen(scene, layout, rng_anat)
    add_lungs(scene, layout)
    add_great_vessels(scene, layout, vessels, hu_artery=hu_art, hu_vein=hu_vein, hu_pulmonary=hu_pa)
    add_heart(scene, layout, hu_left=hu_art, hu_right=hu_rh)
    add_spine(scene, layout)
    add_ribs(scene, layout)

    conf = ConfounderBuilder(spec.confounders, layout, vessels, rng_conf)
    conf.build_calcific()
    conf.dense_venous_contrast()
    conf.build_metal()
    metal_ids = {m.id for m, _ in conf.metal}
    for item in conf.items:
        if item.id not in metal_ids:
            scene.add(item.shape, item.hu, confounder=item.id)

    builder = CementBuilder(spec, layout, vessels, rng_cement)
    objects = builder.build()
    if conf.augmentation:
        hu = objects[0].hu if objects else 2000.0
        objects += conf.screw_augmentation_cement(len(objects) + 1, hu)
    for obj in objects:
        scene.add(obj.shape, obj.hu, truth=obj.id)
        if obj.category == "ivc":
            obj.extra["cranial_level"] = layout.nearest_level(obj.extra["z_range_mm"][1])
    streaks: list[tuple[int, float]] = []
    for item, amplitude in conf.metal:
        scene.add(item.shape, item.hu, confounder=item.id, clears_truth=True, streak_hu=amplitude)
        streaks.append((len(scene.layers) - 1, amplitude))
    return scene, layout, vessels, objects, conf.items, streaks, builder.warnings


def make_phantom(spec: PhantomSpec) -> Phantom:
    """Render every series of ``spec``; the same spec (and seed) gives the same arrays."""
    spec.validate()
    scene, layout, vessels, objects, confounders, streaks, warnings = build_scene(spec)
    study_uid = _uid("study", spec.preset, spec.seed)
    for_uid = _uid("for", spec.preset, spec.seed)
    noise_streams = np.random.SeedSequence([spec.seed, 7]).spawn(len(spec.series))
    rendered = []
    for n, sspec in enumerate(spec.series):
        rng = np.random.default_rng(noise_streams[n])
        rendered.append(_render_series(spec, sspec, n, scene, layout, streaks, rng, study_uid, for_uid,
                                       objects, confounders))  # fmt: skip
    for obj in objects:
        if obj.series_indices:
            obj.primary_series = _primary(obj.shape, obj.series_indices, rendered)
    coverage_all = set()
    for s in rendered:
        coverage_all |= set(s.coverage)
    summary = summarize(
        objects,
        coverage_all,
        layout.level_names(),
        [s.z_range_lps_mm for s in rendered],
        _level_spans(layout),
    )
    names = {i: name for name, i in scene.anatomy_ids.items()}
    return Phantom(
        spec, tuple(rendered), objects, confounders, names, layout, vessels, summary, warnings
    )


def _level_spans(layout: Layout) -> dict[str, tuple[float, float]]:
    """Each level's body plus the disc below it, for naming a craniocaudal extent."""
    names = layout.level_names()
    out = {}
    for a, b in itertools.pairwise(names):
        out[a] = (layout.vertebrae[b].z_hi, layout.vertebrae[a].z_hi)
    out[names[-1]] = (layout.vertebrae[names[-1]].z_lo, layout.vertebrae[names[-1]].z_hi)
    return out


def _primary(shape: Any, indices: list[int], rendered: list[PhantomSeries]) -> int:
    lo, hi = shape.bbox()
    best, best_frac = indices[0], -1.0
    for n in indices:
        z0, z1 = rendered[n].z_range_lps_mm
        frac = max(0.0, min(hi[2], z1) - max(lo[2], z0)) / max(hi[2] - lo[2], 1e-6)
        if frac > best_frac + 1e-9:
            best, best_frac = n, frac
    return best


def series_grid(spec: PhantomSpec, sspec: SeriesSpec, layout: Layout) -> Grid:
    """The LPS-aligned grid of one series: a square in-plane FOV and the series' z extent."""
    slice_mm = float(sspec.slice_mm or spec.slice_mm)
    za = layout.landmark_z(sspec.z_from_level, cranial=True)
    zb = layout.landmark_z(sspec.z_to_level, cranial=False)
    za2 = layout.landmark_z(sspec.z_from_level, cranial=False)
    zb2 = layout.landmark_z(sspec.z_to_level, cranial=True)
    z_lo, z_hi = min(za, zb, za2, zb2), max(za, zb, za2, zb2)
    nk = max(1, math.ceil((z_hi - z_lo) / slice_mm))
    n = max(16, round(spec.fov_mm / spec.pixel_mm))
    px = spec.pixel_mm
    origin = (-(n - 1) / 2 * px, 8.0 - (n - 1) / 2 * px, z_lo + slice_mm / 2)
    return Grid(origin, (px, px, slice_mm), (n, n, nk))


def _coverage_names(layout: Layout, z0: float, z1: float) -> tuple[str, ...]:
    v = layout.vertebrae
    out = []

    def spans(lo: float, hi: float, frac: float = 0.5) -> bool:
        return max(0.0, min(hi, z1) - max(lo, z0)) >= frac * (hi - lo)

    lung_lo = min(lo for lo, _ in layout.lung_z.values())
    if spans(lung_lo, layout.apex_z, 0.9):
        out.append("chest")
    if spans(v["L3"].z_lo, layout.dome_z["right"], 0.5):
        out.append("abdomen")
    if spans(v["T12"].z_lo, v["T1"].z_hi, 0.3):
        out.append("thoracic_spine")
    if spans(v["S1"].z_hi, v["L1"].z_hi, 0.5):
        out.append("lumbar_spine")
    if spans(layout.pelvis_z, v["S1"].z_hi, 0.6):
        out.append("pelvis")
    return tuple(out)


def _render_series(spec: PhantomSpec, sspec: SeriesSpec, index: int, scene: Scene, layout: Layout,
                   streaks: list[tuple[int, float]], rng: np.random.Generator, study_uid: str,
                   for_uid: str, objects: list[TruthObject], confounders: list[Confounder]) -> PhantomSeries:  # fmt: skip
    grid = series_grid(spec, sspec, layout)
    canvas = Canvas(grid)
    streak_layers = dict(streaks)
    for n, layer in enumerate(scene.layers):
        result = canvas.paint(
            layer.shape,
            layer.hu,
            anatomy=scene.anatomy_ids.get(layer.anatomy, 0) if layer.anatomy else 0,
            truth=layer.truth,
            confounder=layer.confounder,
            clears_truth=layer.clears_truth,
        )
        if result is not None and n in streak_layers:
            _add_streaks(canvas, result[0], result[1], streak_layers[n], rng)
    _add_texture(canvas, scene, rng)
    hu = canvas.hu
    if spec.noise_hu > 0:
        noise = rng.standard_normal(grid.shape, dtype=np.float32)
        if spec.noise_smoothing:
            # CT noise is spatially correlated in-plane (reconstruction kernel): smooth, rescale.
            ndimage.gaussian_filter(noise, sigma=(0.7, 0.7, 0.0), output=noise)
            noise *= np.float32(1.0 / max(float(noise.std()), 1e-6))
        noise *= np.float32(spec.noise_hu)
        hu += noise
        del noise
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    hu_i16 = np.rint(hu).astype(np.int16)
    del hu
    present_truth = set(np.unique(canvas.truth).tolist()) - {0}
    for obj in objects:
        if obj.id in present_truth:
            obj.series_indices.append(index)
    present_conf = set(np.unique(canvas.confounder).tolist()) - {0}
    for item in confounders:
        if item.id in present_conf:
            item.series_indices.append(index)
    z0 = grid.origin_lps_mm[2] - grid.spacing_mm[2] / 2
    z1 = z0 + grid.shape[2] * grid.spacing_mm[2]
    arrays, origin, spacing, direction = reorient(
        [hu_i16, canvas.truth, canvas.anatomy, canvas.confounder], grid, spec.orientation
    )
    source = SourceInfo(
        path="",
        format="nifti",
        modality="CT",
        series_uid=_uid("series", spec.preset, spec.seed, index),
        study_uid=study_uid,
        frame_of_reference_uid=for_uid,
        patient_id=f"PHANTOM-{spec.seed}",
        patient_name=f"PHANTOM^{(spec.preset or 'CUSTOM').upper()}",
        study_date="20250101",
        series_description=sspec.description,
        series_number=index + 1,
        manufacturer="cementscan synth",
        kvp=120.0,
        contrast_agent=None if spec.confounders.contrast == "none" else "IODINE",
        slice_thickness_mm=float(grid.spacing_mm[2]),
        convolution_kernel=sspec.kernel,
    )
    ct = CTVolume(arrays[0], spacing, origin, direction, source)
    anatomy = arrays[2] if len(scene.anatomy_ids) > 255 else arrays[2].astype(np.uint8)
    return PhantomSeries(ct, arrays[1], anatomy, arrays[3], (float(z0), float(z1)),
                         _coverage_names(layout, z0, z1), sspec.description)  # fmt: skip


def reorient(arrays: list[np.ndarray], grid: Grid, code: str
             ) -> tuple[list[np.ndarray], tuple[float, float, float], tuple[float, float, float], np.ndarray]:  # fmt: skip
    """Re-store LPS-ordered arrays with axes pointing toward ``code`` (e.g. "RAS", "PIR")."""
    src_axes = [ORIENTATIONS_AXES[c] for c in code]
    flips = [c in "RAI" for c in code]
    direction = np.zeros((3, 3))
    for a, (src, flip) in enumerate(zip(src_axes, flips, strict=True)):
        direction[src, a] = -1.0 if flip else 1.0
    out = []
    for arr in arrays:
        t = np.transpose(arr, src_axes)
        for a, flip in enumerate(flips):
            if flip:
                t = np.flip(t, axis=a)
        out.append(np.ascontiguousarray(t))
    # The new voxel (0, 0, 0) is the old voxel at the far end of every flipped axis.
    first = [0, 0, 0]
    for src, flip in zip(src_axes, flips, strict=True):
        first[src] = grid.shape[src] - 1 if flip else 0
    origin = tuple(float(grid.origin_lps_mm[a] + first[a] * grid.spacing_mm[a]) for a in range(3))
    spacing = tuple(float(grid.spacing_mm[src]) for src in src_axes)
    return out, origin, spacing, direction  # type: ignore[return-value]


def _add_streaks(canvas: Canvas, crop: tuple[slice, ...], cov: np.ndarray, amplitude: float,
                 rng: np.random.Generator) -> None:  # fmt: skip
    """Bright and dark bands radiating from metal in each slice it crosses (beam hardening)."""
    grid = canvas.grid
    xs = grid.axis_mm(0).astype(np.float32)
    ys = grid.axis_mm(1).astype(np.float32)
    angles = rng.uniform(0, np.pi, 6)
    signs = np.array([1.0, -1.0, 1.0, -1.0, -0.6, 0.6])
    body = canvas.anatomy > 0
    for kk in range(cov.shape[2]):
        sl = cov[:, :, kk]
        w = float(sl.sum())
        if w < 0.05:
            continue
        ii, jj = np.nonzero(sl > 0)
        cx = float((xs[crop[0]][ii] * sl[ii, jj]).sum() / w)
        cy = float((ys[crop[1]][jj] * sl[ii, jj]).sum() / w)
        dx = xs[:, None] - cx
        dy = ys[None, :] - cy
        r = np.sqrt(dx * dx + dy * dy)
        pattern = np.zeros_like(r)
        for a, s in zip(angles, signs, strict=True):
            perp = np.abs(-np.sin(a) * dx + np.cos(a) * dy)
            pattern += s * np.exp(-((perp / 1.5) ** 2))
        scale = np.float32(amplitude * min(1.0, w * grid.spacing_mm[0] * grid.spacing_mm[1] / 20.0))
        k = crop[2].start + kk
        canvas.hu[:, :, k] += np.where(
            body[:, :, k], scale * pattern * np.exp(-r / 120.0), 0.0
        ).astype(np.float32)


def _add_texture(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    """Smooth random texture in bone marrow, lung and soft tissue (not on cement or look-alikes)."""
    shape = canvas.grid.shape
    coarse = tuple(max(2, math.ceil(n / 4)) for n in shape)
    field_c = rng.standard_normal(coarse).astype(np.float32)
    field_c = ndimage.gaussian_filter(field_c, 0.8)
    field_c /= max(float(field_c.std()), 1e-6)
    tex = ndimage.zoom(field_c, [n / c for n, c in zip(shape, coarse, strict=True)], order=1, grid_mode=True,
                       mode="nearest")[: shape[0], : shape[1], : shape[2]]  # fmt: skip
    amp_by_id = np.zeros(len(scene.anatomy_ids) + 1, dtype=np.float32)
    for name, i in scene.anatomy_ids.items():
        if name.startswith(("vertebral_body", "sacrum", "ilium", "rib_")):
            amp_by_id[i] = 35.0
        elif name.startswith("lung"):
            amp_by_id[i] = 20.0
        elif name in ("liver", "spleen", "muscle", "abdominal_viscera"):
            amp_by_id[i] = 6.0
    amp = amp_by_id[canvas.anatomy]
    amp[(canvas.truth > 0) | (canvas.confounder > 0)] = 0.0
    canvas.hu += amp * tex[: shape[0], : shape[1], : shape[2]]


def write_phantom(
    phantom: Phantom, out_dir: str | Path, *, dicom: bool = False, png: bool = True
) -> list[Path]:
    """Write the CT(s), label maps, truth.json, overview PNG(s) and optionally DICOM series."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    multi = len(phantom.series) > 1
    written: list[Path] = []
    files = []
    for n, s in enumerate(phantom.series):
        suffix = f"_{n}" if multi else ""
        ct_path = write_volume(s.ct, out / f"ct{suffix}.nii.gz")
        files.append(ct_path.name)
        written.append(ct_path)
        written.append(write_labels(s.truth_labels, s.ct, out / f"truth_labels{suffix}.nii.gz"))
        written.append(write_labels(s.anatomy_labels, s.ct, out / f"anatomy_labels{suffix}.nii.gz"))
        written.append(
            write_labels(s.confounder_labels, s.ct, out / f"confounder_labels{suffix}.nii.gz")
        )
        if png:
            from cementscan.synth.overview import write_overview

            written.append(write_overview(phantom, n, out / f"overview{suffix}.png"))
    truth = phantom.truth_json(files)
    written.append(write_json_atomic(truth, out / "truth.json"))
    if dicom:
        from cementscan.io.dicom_write import write_dicom_series

        for n, s in enumerate(phantom.series):
            src = s.ct.source
            written += write_dicom_series(
                s.ct,
                out / "dicom" / f"series_{n + 1:02d}",
                patient_id=src.patient_id or "PHANTOM",
                patient_name=src.patient_name or "PHANTOM",
                study_uid=src.study_uid or _uid("study"),
                series_uid=src.series_uid or _uid("series", n),
                frame_of_reference_uid=src.frame_of_reference_uid or _uid("for"),
                series_number=n + 1,
                series_description=s.description,
                convolution_kernel=src.convolution_kernel or "B30f",
                slice_thickness_mm=src.slice_thickness_mm,
                contrast_agent=src.contrast_agent,
                study_date=src.study_date,
            )
    return written


__all__ = ["HU_VISCERA", "Phantom", "PhantomSeries", "coverage", "make_phantom", "write_phantom"]
