"""Candidates (+ Anatomy) -> Findings: split each component by compartment, name, link, measure.

A connected cast is cut where it crosses a compartment boundary (DESIGN.md §4, "one cast,
several findings"); the pieces are linked upstream toward the vertebra, and the piece that
leaves the vertebra carries the Yeom type (clinical-evidence.md §1.1). Anatomy only names and
measures: without it (or where a structure is missing) every voxel still ends in a finding,
named by a geometric prior or ``other`` (DESIGN.md §5).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cementscan.anatomy.lungs import is_central
from cementscan.anatomy.model import Anatomy
from cementscan.boxes import dilate_box, grow_box
from cementscan.cement.candidates import Candidate, Candidates
from cementscan.classify.compartments import (
    BONE,
    UNASSIGNED,
    CompartmentMap,
    compartments_for,
    voxel_codes,
)
from cementscan.classify.fill import RingProbe, in_fill_bone, in_fill_rim
from cementscan.classify.placement import (
    Midline,
    bone_midline,
    canal_midline,
    equivalent_diameter_mm,
    levels_known,
    nearest_vertebra,
    shape_name,
    side_of,
)
from cementscan.findings.model import Finding
from cementscan.io.volume import CTVolume

# --- confidence: the candidate's, lowered when the category is a guess ---
DEFAULT_CANDIDATE_CONFIDENCE = 0.8  # candidates from a detector that does not report one
BASIS_FACTOR = {"anatomy": 1.0, "imported": 0.95, "prior": 0.6}
OTHER_FACTOR = 0.8  # "other" says only what a piece is not
# A leak split off a fill where the CT could not confirm that it left the fill's bone (fill.py)
# is named by the masks alone, as much a guess as a prior.
UNCONFIRMED_SPLIT_FACTOR = BASIS_FACTOR["prior"]
# Spinal leaks where the spine is found but not numbered (no level anchor: a crop, a short
# scan): the chain of bodies and discs their compartments come from is the less sure.
UNANCHORED_SPINE_FACTOR = 0.85
SPINAL_LEAKS = ("disc", "epidural", "foraminal", "paravertebral_soft_tissue", "paravertebral_vein")

# --- splitting ---
# Pieces smaller than this are slivers where a 2 mm mask edge cuts the cement (a mask edge is
# off by up to ~1.4 mm after nearest-neighbour lookup): they join the neighbour they touch most.
MIN_PIECE_ML = 0.02
STRUCTURE_26 = np.ones((3, 3, 3), bool)

# --- priors, relative to the spinal canal centre at the piece's height (LPS mm) ---
PARAVERTEBRAL_RADIUS_MM = 75.0  # in-plane reach of paravertebral cement from the canal centre
# (lumbar bodies ~50 mm wide, their centre ~28 mm in front of the canal; the segmental veins run
# to the IVC ~65 mm in front of the canal).
SPINE_Z_MARGIN_MM = 20.0
VEIN_MAX_DIAMETER_MM = 7.0  # segmental/lumbar veins and the plexus are a few mm wide
VEIN_MIN_ASPECT = 2.5  # length / equivalent diameter of cement filling a vein (a blob is ~1-2)
# IVC and azygos windows: anatomy/vessels.py's priors (IVC 17 mm right and 64 mm in front of the
# canal centre, sigma 11/16 mm), two sigmas wide; the azygos lies right-anterolateral of the
# thoracic bodies.
IVC_PRIOR_DX_MM = (-45.0, 10.0)
IVC_PRIOR_DY_MM = (-100.0, -30.0)
AZYGOS_PRIOR_DX_MM = (-30.0, 8.0)
AZYGOS_PRIOR_DY_MM = (-50.0, -5.0)
CAST_MIN_LENGTH_MM = 15.0  # a venous cast fills its vein over at least this length
CAST_CATEGORIES = ("ivc", "azygos", "svc")
BRANCH_MIN_LENGTH_MM = 10.0  # a tube this long beside a cast is a vein of its own
# Cement running alongside a cast, each slice of it this close (in-plane) to the cast's own
# centre at that height or just beyond its end, is the cast where a coarse vein mask is
# narrower than the lumen; a tributary leaves the cast's axis.
SLEEVE_MAX_OFFSET_MM = 10.0
SLEEVE_Z_REACH_MM = 12.0
# Less cement than this in a vertebral body mask is a tract grazing the mask's edge: augmentation
# leaves millilitres (clinical-evidence.md §5.1: 3.7-4.5 ml per vertebra in VERTOS II).
INTRAVERTEBRAL_MIN_PIECE_ML = 0.5
# A coarse body mask can be smaller than the body: cement touching a body's fill whose centroid
# lies within this fraction of the body's equivalent radius of its axis (in-plane) and within
# its height is more of the same fill. A leak lies at or beyond the cortex (radius 1).
BODY_CORE_FRACTION = 0.75
# Cement this close (in-plane) to the canal centerline lies in the canal whatever a coarse canal
# mask says: the lumbar canal is ~15-20 mm across.
CANAL_PRIOR_RADIUS_MM = 7.0
# Leaks that a misplaced disc or body mask can cut off a fill (canal and foramen are told by
# their own masks and the posterior elements, not by bone around the piece).
SPLIT_LEAK_CATEGORIES = ("disc", "paravertebral_soft_tissue", "paravertebral_vein", "other")
CAST_MIN_PIECE_ML = 0.05
# Less than a cast can be: CAST_MIN_LENGTH_MM of a 3 mm vein (the azygos' smallest) holds 0.1 ml.
VEIN_TIP_MAX_ML = 0.1
VENOUS = ("paravertebral_vein", *CAST_CATEGORIES)
PULMONARY_NEIGHBOURS = ("pulmonary_artery", "right_heart", "other")
# A main pulmonary artery runs from the trunk to its hilum mostly in the axial plane (the left
# one arching down over its bronchus): its cement's craniocaudal extent is below this share of
# its length.
GREAT_VESSEL_MAX_Z_FRACTION = 0.7
# ... and is elongated (length / equivalent diameter; "linear" is 3, but a short embolus a voxel
# or two wide is widened by partial volume: 3.0 for an 8 mm one on 1.5 mm voxels).
GREAT_VESSEL_MIN_ASPECT = 2.0
# Emboli fragments of different candidates this many voxels apart (nearest voxel centres, in
# units of the largest spacing) are one embolus: one voxel lost to partial volume between them.
# Separate emboli closer than this are counted as one (the phantoms and inserted cases keep
# emboli two slices apart).
FRAGMENT_GAP_VOXELS = 2.0
# Mediastinal pulmonary arteries (outside the lung masks): within this of a hilum.
PA_TRUNK_MAX_HILUM_MM = 60.0
PA_MIN_CANAL_DISTANCE_MM = 45.0  # the trunk and main arteries lie well in front of the spine
# In front of the thoracic vertebral bodies (canal centre to the anterior body surface ~35 mm at
# T4-T8): paravertebral cement lies beside the bodies, the mediastinal arteries in front.
PA_MIN_ANTERIOR_MM = 45.0

# --- priors without any anatomy: the HU of a shell around the cement ---
SHELL_MM = 3.0
LUNG_SHELL_HU = -400.0  # aerated lung around the cement: an embolus
# A lone piece outside the lung masks with this share of aerated lung around it is an embolus
# against a rib, the pleura or the spine (a paravertebral leak lies in soft tissue).
LONE_LUNG_FRACTION = 0.4
BONE_SHELL_HU = 150.0  # trabecular/cortical bone around it
BONE_SHELL_FRACTION = 0.5
INTRAVERTEBRAL_MIN_ML = 0.5

# Yeom et al. 2003 B/S/C and the intradiscal D extension (clinical-evidence.md §1.1, PMC8449924):
# the type of the piece that leaves the vertebra, by the compartment it leaves into. Canal
# cement is typed B (the basivertebral route into the epidural venous plexus is the usual path
# into the ventral canal); foraminal and paravertebral soft-tissue cement is C (cortical
# defect); the disc is D, not C, following the extension; veins are S.
YEOM_BY_CATEGORY = {
    "epidural": "B",
    "foraminal": "C",
    "paravertebral_soft_tissue": "C",
    "disc": "D",
    "paravertebral_vein": "S",
    "azygos": "S",
    "ivc": "S",
    "svc": "S",
    "other": "C",
}
FIRST_ORDER = ("disc", "epidural", "foraminal", "paravertebral_soft_tissue", "paravertebral_vein")
# A first-order leak this close to treated cement left that vertebra even where no voxel path
# joins them (partial volume thins the link; the cortex may lie between the fill and the leak).
YEOM_MAX_GAP_MM = 10.0
# Upstream rank along the venous route (clinical-evidence.md §3): a component without
# vertebral cement is rooted at its lowest-ranked piece.
ROUTE_RANK = {
    "intravertebral": 0,
    "disc": 1,
    "epidural": 1,
    "foraminal": 1,
    "paravertebral_soft_tissue": 1,
    "paravertebral_vein": 1,
    "other": 1,
    "azygos": 2,
    "ivc": 2,
    "svc": 3,
    "right_heart": 4,
    "pulmonary_artery": 5,
}
LOBE_MASKS = {
    "lung_upper_lobe_right": "upper",
    "lung_middle_lobe_right": "middle",
    "lung_lower_lobe_right": "lower",
    "lung_upper_lobe_left": "upper",
    "lung_lower_lobe_left": "lower",
}


@dataclass
class _Piece:
    """One finding in the making: voxels of one compartment within one candidate."""

    candidate: Candidate
    lps_mm: np.ndarray  # (n, 3)
    hu: np.ndarray  # (n,)
    code: int
    category: str = "other"
    basis: str = "prior"
    mask_name: str | None = None
    neighbours: set[int] = field(default_factory=set)  # indices into the candidate's pieces
    parent: int | None = None  # index of the upstream piece among its candidate's pieces
    upstream: _Piece | None = None  # the upstream piece (its parent, or nearby treated cement)
    id: int = 0
    vertebra: int | None = None  # index into anatomy.vertebrae
    # A leak split off a fill where the CT could not confirm that it lies outside the fill's
    # bone (see fill.py): its category rests on the masks alone.
    unconfirmed: bool = False
    # A fragment of an embolus whose other part is another candidate (see _join_fragments): its
    # voxels are reported in that piece's finding.
    joined_to: _Piece | None = None


class _Context:
    """Per-series state shared by every candidate: anatomy lookups and midline."""

    def __init__(self, volume: CTVolume, anatomy: Anatomy | None) -> None:
        self.volume = volume
        self.anatomy = anatomy
        self.cmap: CompartmentMap | None = None if anatomy is None else compartments_for(anatomy)
        canal = canal_midline(anatomy)
        self._canal = canal
        self._bone: Midline | None = None
        self.basis = (
            "imported" if anatomy is not None and anatomy.source == "imported" else ("anatomy")
        )
        self.has_spine = anatomy is not None and any(
            n.startswith("vertebral_body_") for n in anatomy.masks
        )
        self.spine_z: tuple[float, float] | None = None
        self._bodies: dict[str, tuple[np.ndarray, float, tuple[float, float]] | None] = {}
        if anatomy is not None and anatomy.vertebrae:
            self.spine_z = (
                min(v.z_range_mm[0] for v in anatomy.vertebrae),
                max(v.z_range_mm[1] for v in anatomy.vertebrae),
            )
        elif canal is not None:
            self.spine_z = (float(canal.z_mm.min()), float(canal.z_mm.max()))

    @property
    def midline(self) -> Midline:
        if self._canal is not None:
            return self._canal
        if self._bone is None:  # computed only when some finding needs it
            self._bone = bone_midline(self.volume)
        return self._bone

    def body_axis(self, mask_name: str) -> tuple[np.ndarray, float, tuple[float, float]] | None:
        """A body mask's in-plane centre (x, y), equivalent radius and z-range, all in mm."""
        if mask_name not in self._bodies:
            assert self.anatomy is not None
            mask = self.anatomy.masks.get(mask_name)
            if mask is None or not mask.any():
                self._bodies[mask_name] = None
            else:
                grid = self.anatomy.grid
                lps = grid.to_lps(np.argwhere(mask))
                slices = max(len(np.unique(lps[:, 2])), 1)
                area_mm2 = len(lps) * grid.spacing_mm**2 / slices
                z = (float(lps[:, 2].min()), float(lps[:, 2].max()))
                self._bodies[mask_name] = (
                    lps[:, :2].mean(axis=0),
                    float(np.sqrt(area_mm2 / np.pi)),
                    z,
                )
        return self._bodies[mask_name]

    def has(self, name: str) -> bool:
        return self.anatomy is not None and name in self.anatomy.masks


def classify_candidates(
    candidates: Candidates,
    volume: CTVolume,
    anatomy: Anatomy | None,
    series_index: int,
    first_id: int,
    warnings: list[str] | None = None,
) -> tuple[tuple[Finding, ...], np.ndarray]:
    """Findings (ids ``first_id``, ``first_id + 1``, ...) and their label map on the volume's
    [i, j, k] grid (int32, value = finding id).

    Each candidate is split where it crosses a compartment boundary of ``anatomy``; the pieces
    are named, linked upstream (``connected_to``), Yeom-typed and measured. With
    ``anatomy=None`` each candidate is one finding named by a CT-only prior. Cement inside a
    vein that the anatomy found filled with undiluted contrast is not reported (a message goes
    to ``warnings``): there it cannot be told from contrast (DESIGN.md §4).
    """
    labels = candidates.labels
    out = np.zeros(labels.shape, np.int32)
    if not candidates.candidates:
        return (), out
    ctx = _Context(volume, anatomy)
    boxes = ndimage.find_objects(labels)
    pieces_by_candidate: list[tuple[list[_Piece], list[tuple[slice, ...]], list[np.ndarray]]] = []
    all_pieces: list[_Piece] = []
    for cand in candidates.candidates:
        if cand.label - 1 >= len(boxes) or boxes[cand.label - 1] is None:
            continue
        box = boxes[cand.label - 1]
        assert box is not None
        pieces, members = _split(cand, box, labels, ctx)
        pieces_by_candidate.append((pieces, [box] * len(pieces), members))
        all_pieces.extend(pieces)

    _join_fragments(all_pieces, ctx)

    # Dense-contrast veins are not assessable: drop what lies in them, say so once.
    dense = set() if anatomy is None else set(anatomy.dense_contrast_veins)
    dropped = Counter(p.category for p in all_pieces if p.category in dense)
    if dropped and warnings is not None:
        for vein, count in sorted(dropped.items()):
            warnings.append(
                f"{count} dense piece(s) in the {vein} not reported: undiluted contrast fills "
                "it, so cement cannot be told from contrast there"
            )

    next_id = first_id
    for pieces, _, _ in pieces_by_candidate:
        for piece in _link_order(pieces):
            if piece.category in dense:
                piece.id = 0
                continue
            if piece.joined_to is not None:
                continue  # takes its embolus's id below
            piece.id = next_id
            next_id += 1
    for piece in all_pieces:
        if piece.joined_to is not None:
            piece.id = piece.joined_to.id

    treated = _treated_vertebrae(all_pieces)
    for pieces, _, _ in pieces_by_candidate:
        for piece in pieces:
            if piece.parent is not None:
                piece.upstream = pieces[piece.parent]
            elif piece.category in FIRST_ORDER:
                piece.upstream = _nearby_treated(piece, treated)
    findings: list[Finding] = []
    for pieces, boxes_, members in pieces_by_candidate:
        for piece, box, member in zip(pieces, boxes_, members, strict=True):
            if piece.id == 0:
                continue
            out[box][member] = piece.id
        for piece in sorted(
            (p for p in pieces if p.id and p.joined_to is None), key=lambda p: p.id
        ):
            findings.append(_finding(piece, pieces, all_pieces, treated, ctx, series_index))
    return tuple(findings), out


# --- splitting ------------------------------------------------------------------------------


def _split(
    cand: Candidate, box: tuple[slice, ...], labels: np.ndarray, ctx: _Context
) -> tuple[list[_Piece], list[np.ndarray]]:
    """The candidate's pieces and, per piece, its boolean mask within ``box``."""
    mask = labels[box] == cand.label
    offset = np.array([s.start for s in box])
    ijk = np.argwhere(mask)
    lps = ctx.volume.index_to_lps(ijk + offset)
    hu = ctx.volume.hu[box][mask].astype(np.float32)
    if ctx.anatomy is None or ctx.cmap is None:
        piece = _Piece(cand, lps, hu, UNASSIGNED)
        _name_unanchored(piece, box, mask, ctx)
        return [piece], [mask]
    codes = voxel_codes(ctx.anatomy, ctx.cmap, lps)
    code_box = np.full(mask.shape, -1, np.int16)
    code_box[mask] = codes
    piece_map = np.zeros(mask.shape, np.int32)
    piece_code: list[int] = [-1]
    for code in np.unique(codes):
        lab, count = ndimage.label(code_box == code, structure=STRUCTURE_26)
        inside = lab > 0
        piece_map[inside] = lab[inside] + len(piece_code) - 1
        piece_code.extend([int(code)] * count)
    voxel_piece = piece_map[mask]
    n_pieces = len(piece_code) - 1
    sizes = np.bincount(voxel_piece, minlength=n_pieces + 1).astype(float)
    contacts = _contacts(piece_map, n_pieces)
    group = _merge_slivers(piece_code, sizes * ctx.volume.voxel_volume_ml, contacts)
    voxel_group = group[voxel_piece]
    groups = sorted(set(voxel_group.tolist()))
    index_of = {g: n for n, g in enumerate(groups)}
    pieces: list[_Piece] = []
    members: list[np.ndarray] = []
    for g in groups:
        sel = voxel_group == g
        pieces.append(_Piece(cand, lps[sel], hu[sel], piece_code[g]))
        member = np.zeros(mask.shape, bool)
        member[tuple(ijk[sel].T)] = True
        members.append(member)
    for (a, b), _ in contacts.items():
        ga, gb = int(group[a]), int(group[b])
        if ga != gb:
            pieces[index_of[ga]].neighbours.add(index_of[gb])
            pieces[index_of[gb]].neighbours.add(index_of[ga])
    for piece in pieces:
        _name_from_code(piece, ctx)
    for piece in pieces:
        if piece.code in (UNASSIGNED, BONE):
            _name_unassigned(piece, [pieces[m] for m in piece.neighbours], box, mask, ctx)
    return _absorb(pieces, members, ctx, box, labels)


def _absorb(
    pieces: list[_Piece],
    members: list[np.ndarray],
    ctx: _Context,
    box: tuple[slice, ...],
    labels: np.ndarray,
) -> tuple[list[_Piece], list[np.ndarray]]:
    """Join pieces that a coarse mask edge cut off their real compartment (see _absorber)."""
    alive = set(range(len(pieces)))
    probe: list[RingProbe] = []  # built on first use: most candidates are never split
    ring_hu: dict[tuple[int, int], float | None] = {}

    def in_bone(n: int, fill: int) -> bool | None:
        if not probe:
            probe.append(RingProbe(ctx.volume, labels, box))
        for m in (n, fill):
            key = (m, len(pieces[m].lps_mm))
            if key not in ring_hu:
                ring_hu[key] = probe[0].median_hu(members[m])
        return in_fill_bone(
            ring_hu[(n, len(pieces[n].lps_mm))], ring_hu[(fill, len(pieces[fill].lps_mm))]
        )

    changed = True
    while changed:
        changed = False
        for n in sorted(alive, key=lambda n: len(pieces[n].lps_mm)):
            target = _absorber(n, pieces, ctx, in_bone)
            if target is None:
                continue
            keep = pieces[target]
            gone = pieces[n]
            keep.lps_mm = np.vstack([keep.lps_mm, gone.lps_mm])
            keep.hu = np.concatenate([keep.hu, gone.hu])
            members[target] = members[target] | members[n]
            for m in gone.neighbours - {target}:
                pieces[m].neighbours.discard(n)
                pieces[m].neighbours.add(target)
                keep.neighbours.add(m)
            keep.neighbours.discard(n)
            alive.discard(n)
            changed = True
            break
    keep_order = sorted(alive)
    index = {old: new for new, old in enumerate(keep_order)}
    out = [pieces[n] for n in keep_order]
    for piece in out:
        piece.neighbours = {index[m] for m in piece.neighbours if m in index}
    return out, [members[n] for n in keep_order]


def _absorber(
    n: int, pieces: list[_Piece], ctx: _Context, in_bone: Callable[[int, int], bool | None]
) -> int | None:
    """The piece that should absorb piece ``n``, or None. The rules:

    - one compartment: a piece touching a larger piece of its own structure mask is that piece
      (they were split only by cement between them that has since joined one of them: a cast
      across a gap in its vein mask);
    - a cast sleeve or bulge: cement outside a coarse vein mask running alongside the cast
      (_runs_along), or touching only the cast and not running away from it as a tube, is the
      same cast, unless it also touches a fill (the vein between them is a leak of its own);
    - a body's core: cement touching a body's fill near the body's axis is that fill
      (_in_body_core: a coarse body mask smaller than the body);
    - a vein across a disc mask: a "disc" piece touching only venous cement (disc cement
      enters through an endplate break from a body, clinical-evidence.md §1.1);
    - a vein's tip: a "cast" shorter and smaller than any cast (VEIN_TIP_MAX_ML) touching only
      a paravertebral vein is that vein reaching into a coarse vein mask;
    - a vertebral-body sliver: less cement than any augmentation leaves in a body (a tract
      grazing the next body's mask edge) belongs to the piece it touches;
    - an impossible embolus: lung-mask cement touching spinal or paravertebral cement is that
      cement crossing a lung mask's edge (cement reaches the pulmonary arteries only through
      the right heart, clinical-evidence.md §3);
    - one embolus: pulmonary pieces that touch (named by a lung mask and by the mediastinal
      prior) are one finding;
    - a pedicle/cortex passage: unassigned cement between a body and its canal, foramen or
      disc leak is the route of that leak;
    - fill beyond a misplaced mask: a fill touching another body's fill (cement does not
      cross a disc without leaving a disc piece), a disc or paravertebral piece of a fill that
      is only the fill's blurred rim, and one whose in-plane surroundings are the fill's bone
      (fill.py: beyond the endplate or cortex they are disc or soft tissue) are that fill. A
      disc piece touching the fills of both its bodies is judged so too: a disc leak from one of
      two adjacent treated levels can reach the other's fill (clinical-evidence.md §1.4: disc
      leaks in 22 % of levels under CT fluoroscopy, 34 % of leaking vertebrae in VERTOS II);
    - a disc leak's foot: a small "fill" (below INTRAVERTEBRAL_MIN_PIECE_ML) in a candidate
      with no real fill, touching a larger leak, is that leak crossing a body mask's edge.
    """
    piece = pieces[n]
    if not piece.neighbours:
        return None
    neighbours = sorted(piece.neighbours, key=lambda m: -len(pieces[m].lps_mm))
    volume_ml = len(piece.lps_mm) * ctx.volume.voxel_volume_ml
    cats = {m: pieces[m].category for m in neighbours}
    if piece.code not in (UNASSIGNED, BONE):
        for m in neighbours:
            if pieces[m].code == piece.code and len(pieces[m].lps_mm) >= len(piece.lps_mm):
                return m
    casts = [m for m in neighbours if cats[m] in CAST_CATEGORIES]
    # The vein between a fill and a cast (a segmental vein draining into the azygos or the IVC)
    # is a leak of its own, connected to both, however close to the cast it runs.
    route = any(cats[m] == "intravertebral" for m in neighbours)
    if piece.code == UNASSIGNED and casts and not route:
        length_mm, _ = _extents_mm(piece.lps_mm, _voxel_mm(ctx.volume))
        for m in casts:  # a sleeve or the cast's continuation, whatever else it touches
            if _runs_along(piece, pieces[m], length_mm):
                return m
        if len(neighbours) == 1:  # a bulge, unless it runs away from the cast as a tube
            linear = shape_name(length_mm, volume_ml) == "linear"
            return None if linear and length_mm >= BRANCH_MIN_LENGTH_MM else casts[0]
    if piece.code in (UNASSIGNED, BONE) and piece.category != "epidural":
        for m in neighbours:
            if cats[m] == "intravertebral" and _in_body_core(piece, pieces[m], ctx):
                return m
    if piece.category == "intravertebral" and volume_ml < INTRAVERTEBRAL_MIN_PIECE_ML:
        larger_fill = any(
            p.category == "intravertebral" and len(p.lps_mm) > len(piece.lps_mm) for p in pieces
        )
        if larger_fill:
            return neighbours[0]
    if (
        piece.category in CAST_CATEGORIES
        and volume_ml < CAST_MIN_PIECE_ML
        and any(p is not piece and p.category == piece.category for p in pieces)
    ):
        return neighbours[0]  # a crumb of a cast whose main part lies elsewhere in the lumen
    if (
        piece.category in CAST_CATEGORIES
        and all(cats[m] == "paravertebral_vein" for m in neighbours)
        and volume_ml < VEIN_TIP_MAX_ML
        and _extents_mm(piece.lps_mm, _voxel_mm(ctx.volume))[0] < CAST_MIN_LENGTH_MM
    ):
        return neighbours[0]  # a segmental vein's tip in a vein mask's edge: no cast is that short
    if piece.category == "disc" and all(cats[m] in VENOUS for m in neighbours):
        return neighbours[0]  # a vein crossing a disc mask's edge: disc cement comes from a body
    if piece.category == "pulmonary_artery":
        foreign = [m for m in neighbours if cats[m] not in PULMONARY_NEIGHBOURS]
        if foreign:
            return foreign[0]
        # One embolus whatever masks it spans (a lung's and the mediastinum's, named by a mask
        # and by a prior): one compartment, one finding.
        same = [m for m in neighbours if cats[m] == "pulmonary_artery"]
        return same[0] if same else None
    target = _misplaced_mask_target(n, pieces, neighbours, volume_ml, ctx, in_bone)
    if target is not None:
        return target
    if piece.code in (UNASSIGNED, BONE) and len(neighbours) == 2:
        body = [m for m in neighbours if cats[m] == "intravertebral"]
        leak = [m for m in neighbours if cats[m] in ("epidural", "foraminal", "disc")]
        if body and leak and volume_ml <= len(pieces[leak[0]].lps_mm) * ctx.volume.voxel_volume_ml:
            return leak[0]
    return None


def _misplaced_mask_target(
    n: int,
    pieces: list[_Piece],
    neighbours: list[int],
    volume_ml: float,
    ctx: _Context,
    in_bone: Callable[[int, int], bool | None],
) -> int | None:
    """The fill (or leak) that piece ``n`` belongs to where a mask cut it off wrongly (the
    "fill beyond a misplaced mask" and "disc leak's foot" rules of _absorber), else None."""
    piece = pieces[n]
    voxel_ml = ctx.volume.voxel_volume_ml
    fills = [m for m in neighbours if pieces[m].category == "intravertebral"]
    if piece.category == "intravertebral":
        larger = [m for m in fills if len(pieces[m].lps_mm) > len(piece.lps_mm)]
        if larger:
            return larger[0]
        real_fill = any(
            p.category == "intravertebral"
            and len(p.lps_mm) * voxel_ml >= INTRAVERTEBRAL_MIN_PIECE_ML
            for p in pieces
        )
        leaks = [
            m
            for m in neighbours
            if pieces[m].category in FIRST_ORDER and len(pieces[m].lps_mm) > len(piece.lps_mm)
        ]
        if not real_fill and volume_ml < INTRAVERTEBRAL_MIN_PIECE_ML and leaks:
            return leaks[0]
        return None
    if piece.category not in SPLIT_LEAK_CATEGORIES or not fills:
        return None
    fill = pieces[fills[0]]
    if in_fill_rim(piece.lps_mm, piece.hu, fill.lps_mm, fill.hu):
        return fills[0]
    verdict = in_bone(n, fills[0])
    if verdict:
        return fills[0]
    if verdict is None:
        piece.unconfirmed = True
    return None


def _in_body_core(piece: _Piece, body: _Piece, ctx: _Context) -> bool:
    """Whether ``piece`` lies in the core of the body whose fill ``body`` is (BODY_CORE_FRACTION)."""
    axis = None if body.mask_name is None else ctx.body_axis(body.mask_name)
    if axis is None:
        return False
    centre_xy, radius_mm, (z_low, z_high) = axis
    centroid = piece.lps_mm.mean(axis=0)
    inplane_mm = float(np.hypot(*(centroid[:2] - centre_xy)))
    return inplane_mm <= BODY_CORE_FRACTION * radius_mm and z_low <= centroid[2] <= z_high


def _runs_along(piece: _Piece, cast: _Piece, length_mm: float) -> bool:
    """Whether every slice of ``piece`` lies within SLEEVE_MAX_OFFSET_MM (in-plane) of the
    centre of ``cast`` at the nearest height the cast reaches (within SLEEVE_Z_REACH_MM; at any
    height for a piece running craniocaudally, ``length_mm`` being its length: the cast going on
    beyond its vein mask's end, as the azygos and the IVC run)."""
    reach_mm = np.inf if _z_extent(piece.lps_mm) >= 0.7 * length_mm else SLEEVE_Z_REACH_MM
    cast_z = np.round(cast.lps_mm[:, 2], 1)
    heights, inverse = np.unique(cast_z, return_inverse=True)
    counts = np.bincount(inverse).astype(float)
    centres = np.stack(
        [np.bincount(inverse, weights=cast.lps_mm[:, a]) / counts for a in (0, 1)], axis=1
    )
    piece_z = np.round(piece.lps_mm[:, 2], 1)
    for z in np.unique(piece_z):
        nearest = int(np.argmin(np.abs(heights - z)))
        if abs(heights[nearest] - z) > reach_mm:
            return False
        inplane = piece.lps_mm[piece_z == z, :2].mean(axis=0)
        if float(np.hypot(*(inplane - centres[nearest]))) > SLEEVE_MAX_OFFSET_MM:
            return False
    return True


def _contacts(piece_map: np.ndarray, n_pieces: int) -> dict[tuple[int, int], int]:
    """Face/edge/corner contacts between differently labelled voxels: (a, b) a < b -> count."""
    out: Counter[tuple[int, int]] = Counter()
    if n_pieces < 2:
        return {}
    shape = piece_map.shape
    for dx in (0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if (dx, dy, dz) <= (0, 0, 0):
                    continue
                a_sl, b_sl = [], []
                for d, n in zip((dx, dy, dz), shape, strict=True):
                    a_sl.append(slice(max(0, -d), n - max(0, d)))
                    b_sl.append(slice(max(0, d), n - max(0, -d)))
                a = piece_map[tuple(a_sl)]
                b = piece_map[tuple(b_sl)]
                touch = (a != b) & (a > 0) & (b > 0)
                if not touch.any():
                    continue
                lo = np.minimum(a[touch], b[touch]).astype(np.int64)
                hi = np.maximum(a[touch], b[touch]).astype(np.int64)
                keys, counts = np.unique(lo * (n_pieces + 1) + hi, return_counts=True)
                for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
                    out[(key // (n_pieces + 1), key % (n_pieces + 1))] += count
    return dict(out)


def _merge_slivers(
    piece_code: list[int], volume_ml: np.ndarray, contacts: dict[tuple[int, int], int]
) -> np.ndarray:
    """Group index per piece (1-based, group = representative piece) after merging slivers and
    bone pieces into the neighbour they touch most, then joining touching same-code groups."""
    n = len(piece_code) - 1
    group = np.arange(n + 1)
    volume = volume_ml.copy()

    def find(p: int) -> int:
        while group[p] != p:
            group[p] = group[group[p]]
            p = int(group[p])
        return p

    def touching(p: int) -> Counter[int]:
        total: Counter[int] = Counter()
        for (a, b), count in contacts.items():
            ra, rb = find(a), find(b)
            if ra == rb:
                continue
            if ra == p:
                total[rb] += count
            elif rb == p:
                total[ra] += count
        return total

    code = list(piece_code)
    while True:
        roots = {find(p) for p in range(1, n + 1)}
        # Same-code groups that touch (after a sliver between them was absorbed) are one piece.
        for a, b in contacts:
            ra, rb = find(a), find(b)
            if ra != rb and code[ra] == code[rb]:
                group[rb] = ra
                volume[ra] += volume[rb]
        roots = {find(p) for p in range(1, n + 1)}
        weak = [r for r in roots if code[r] == BONE or volume[r] < MIN_PIECE_ML]
        weak = [r for r in weak if touching(r)]
        if not weak or len(roots) == 1:
            break
        # Bone first (it never stands alone when it touches cement elsewhere), then smallest.
        sliver = min(weak, key=lambda r: (code[r] != BONE, volume[r]))
        target = max(
            touching(sliver).items(),
            key=lambda item: (item[1], code[item[0]] not in (BONE, UNASSIGNED)),
        )[0]
        group[sliver] = target
        volume[target] += volume[sliver]
    return np.array([find(p) for p in range(n + 1)])


# --- naming ---------------------------------------------------------------------------------


def _name_from_code(piece: _Piece, ctx: _Context) -> None:
    assert ctx.cmap is not None
    comp = ctx.cmap.compartments[piece.code]
    if comp.category is None:
        return
    piece.category = comp.category
    piece.basis = ctx.basis
    piece.mask_name = comp.mask_name
    if piece.category == "right_heart" and _in_great_vessels(piece, ctx):
        piece.category, piece.basis = "pulmonary_artery", "prior"


def _in_great_vessels(piece: _Piece, ctx: _Context) -> bool:
    """An elongated cement piece of the heart mask at or above the hila, running in the axial plane:
    in the pulmonary trunk or a main pulmonary artery where the heart mask reaches up along the
    great vessels (anatomy/heart.py cannot always stop it at the heart's base, e.g. in a crop).

    The right heart ends at the pulmonary valve; the trunk divides at about the hila's level and
    the main arteries run from there laterally and backward to the hila (clinical-evidence.md
    §2.2: a linear dense focus there is central pulmonary cement embolism). Intracardiac cement
    lies in the atrium and ventricle, below the hila.
    """
    anatomy = ctx.anatomy
    if anatomy is None:
        return False
    hila_z = [info.hilum_lps_mm[2] for info in anatomy.lungs.values() if info.hilum_lps_mm]
    if not hila_z or float(piece.lps_mm[:, 2].mean()) < min(hila_z):
        return False
    # The shape of the whole cement (a heart mask's edge may cut a short embolus in two).
    cand = piece.candidate
    aspect = cand.length_mm / max(equivalent_diameter_mm(cand.length_mm, cand.volume_ml), 1e-6)
    if aspect < GREAT_VESSEL_MIN_ASPECT:
        return False
    z_extent_mm = cand.bbox_lps_mm[1][2] - cand.bbox_lps_mm[0][2]
    return z_extent_mm <= GREAT_VESSEL_MAX_Z_FRACTION * cand.length_mm


def _name_unassigned(
    piece: _Piece, neighbours: list[_Piece], box: tuple[slice, ...], mask: np.ndarray, ctx: _Context
) -> None:
    """Cement outside every named structure (or in bone away from a body): paravertebral vein or
    soft tissue near the spine, a prior IVC/azygos/pulmonary trunk where that structure is
    missing, else other."""
    centroid = piece.lps_mm.mean(axis=0)
    z = float(centroid[2])
    mid = ctx.midline
    dx = float(centroid[0] - mid.x_at(z))
    y_mid = mid.y_at(z)
    dy = None if y_mid is None else float(centroid[1] - y_mid)
    length_mm, _ = _extents_mm(piece.lps_mm, _voxel_mm(ctx.volume))
    volume_ml = len(piece.lps_mm) * ctx.volume.voxel_volume_ml
    diameter = equivalent_diameter_mm(length_mm, volume_ml)
    tubular = length_mm >= VEIN_MIN_ASPECT * diameter and diameter <= VEIN_MAX_DIAMETER_MM
    along_z = _z_extent(piece.lps_mm) >= 0.7 * length_mm
    near_cast = any(n.category in ("ivc", "azygos", "svc") for n in neighbours)

    # Continuing intracardiac cement and nothing else: the same spike reaching past the edge of
    # the heart mask (a geometric prior on the 2 mm grid, anatomy/heart.py).
    if neighbours and all(n.category == "right_heart" for n in neighbours):
        piece.category, piece.basis = "right_heart", "prior"
        return
    # Likewise an embolus reaching past the edge of a lung mask, where no spinal prior claims
    # the piece (lung-mask cement touching a paravertebral leak is that leak: see _absorber).
    embolus_beyond_edge = bool(neighbours) and all(
        n.category == "pulmonary_artery" for n in neighbours
    )
    if not neighbours:
        # A lone piece that aerated lung surrounds is an embolus, whatever a coarse lung mask's
        # edge says (small basal emboli lie against the spine).
        shell_hu = _shell_hu(ctx.volume, box, mask)
        if len(shell_hu) and float(np.mean(shell_hu < LUNG_SHELL_HU)) >= LONE_LUNG_FRACTION:
            piece.category, piece.basis = "pulmonary_artery", "prior"
            return
    if dy is not None and ctx.has_spine:
        # The trunk and main arteries lie in front of the thoracic vertebral bodies, where a
        # paravertebral leak (beside the bodies) does not reach: looked for first there.
        if dy <= -PA_MIN_ANTERIOR_MM and _pulmonary_trunk(ctx, centroid, dx, dy):
            piece.category, piece.basis = "pulmonary_artery", "prior"
            return
        in_spine_z = ctx.spine_z is not None and (
            ctx.spine_z[0] - SPINE_Z_MARGIN_MM <= z <= ctx.spine_z[1] + SPINE_Z_MARGIN_MM
        )
        if in_spine_z and np.hypot(dx, dy) <= CANAL_PRIOR_RADIUS_MM:
            piece.category, piece.basis = "epidural", "prior"
            return
        if (
            not ctx.has("ivc")
            and _within(dx, IVC_PRIOR_DX_MM)
            and _within(dy, IVC_PRIOR_DY_MM)
            and along_z
            and length_mm >= CAST_MIN_LENGTH_MM
            and not _in_thorax(ctx, z)
        ):
            piece.category, piece.basis = "ivc", "prior"
            return
        if (
            not ctx.has("azygos")
            and _within(dx, AZYGOS_PRIOR_DX_MM)
            and _within(dy, AZYGOS_PRIOR_DY_MM)
            and along_z
            and _in_thorax(ctx, z)
        ):
            piece.category, piece.basis = "azygos", "prior"
            return
        if np.hypot(dx, dy) <= PARAVERTEBRAL_RADIUS_MM and in_spine_z:
            vein = tubular or near_cast
            piece.category = "paravertebral_vein" if vein else "paravertebral_soft_tissue"
            piece.basis = ctx.basis
            return
        if embolus_beyond_edge or _pulmonary_trunk(ctx, centroid, dx, dy):
            piece.category, piece.basis = "pulmonary_artery", "prior"
            return
        piece.category, piece.basis = "other", ctx.basis
        return
    # No spine in the anatomy (a mediastinal crop): medial to a hilum outside the lungs is a
    # central artery; else fall back on what surrounds the cement in the CT itself.
    if embolus_beyond_edge or _pulmonary_trunk(ctx, centroid, None, None):
        piece.category, piece.basis = "pulmonary_artery", "prior"
        return
    _name_unanchored(piece, box, mask, ctx)


def _name_unanchored(
    piece: _Piece, box: tuple[slice, ...], mask: np.ndarray, ctx: _Context
) -> None:
    """A prior from the CT alone: aerated lung around the cement -> embolus; bone all around a
    sizeable piece -> intravertebral; else other."""
    shell_hu = _shell_hu(ctx.volume, box, mask)
    volume_ml = len(piece.lps_mm) * ctx.volume.voxel_volume_ml
    piece.basis = "prior"
    if len(shell_hu) and float(np.median(shell_hu)) < LUNG_SHELL_HU:
        piece.category = "pulmonary_artery"
    elif (
        len(shell_hu)
        and float(np.mean(shell_hu >= BONE_SHELL_HU)) >= BONE_SHELL_FRACTION
        and volume_ml >= INTRAVERTEBRAL_MIN_ML
    ):
        piece.category = "intravertebral"
    else:
        piece.category = "other"


def _shell_hu(volume: CTVolume, box: tuple[slice, ...], mask: np.ndarray) -> np.ndarray:
    """HU of the voxels within ~SHELL_MM around the cement (in-plane and through-plane)."""
    pad = [max(1, int(round(SHELL_MM / s))) for s in volume.spacing_mm]
    big = grow_box(box, pad, volume.shape)
    inner = np.zeros([s.stop - s.start for s in big], bool)
    inner[
        tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(box, big, strict=True))
    ] = mask
    shell = dilate_box(inner, pad) & ~inner
    return np.asarray(volume.hu[big][shell], np.float32)


def _within(value: float, window: tuple[float, float]) -> bool:
    return window[0] <= value <= window[1]


def _in_thorax(ctx: _Context, z_mm: float) -> bool:
    """Within the lungs' craniocaudal span (when the anatomy has lungs)."""
    if ctx.anatomy is None or not ctx.anatomy.lungs:
        return False
    return any(
        info.z_range_mm[0] <= z_mm <= info.z_range_mm[1] for info in ctx.anatomy.lungs.values()
    )


def _pulmonary_trunk(
    ctx: _Context, centroid: np.ndarray, dx: float | None, dy: float | None
) -> bool:
    """Cement outside the lung masks but at a hilum, away from the spine (when a spinal canal
    gives ``dx``, ``dy``): a central artery."""
    if ctx.anatomy is None:
        return False
    if dx is not None and dy is not None and np.hypot(dx, dy) < PA_MIN_CANAL_DISTANCE_MM:
        return False
    for info in ctx.anatomy.lungs.values():
        if info.hilum_lps_mm is None:
            continue
        near = np.linalg.norm(centroid - np.asarray(info.hilum_lps_mm)) <= PA_TRUNK_MAX_HILUM_MM
        if near and bool(is_central(centroid[None, :], info, in_lung=np.array([False]))[0]):
            return True
    return False


def _join_fragments(pieces: list[_Piece], ctx: _Context) -> None:
    """Join emboli fragments of different candidates: pulmonary pieces at most
    FRAGMENT_GAP_VOXELS voxels apart are one embolus broken where partial volume thinned it
    below the detection threshold. The larger piece takes the smaller's voxels; the smaller
    keeps them for the label map and points to it (``joined_to``)."""
    emboli = [p for p in pieces if p.category == "pulmonary_artery"]
    if len(emboli) < 2:
        return
    reach_mm = FRAGMENT_GAP_VOXELS * float(max(ctx.volume.spacing_mm)) + 1e-3
    emboli.sort(key=lambda p: -len(p.lps_mm))
    trees: dict[int, cKDTree] = {}
    root: dict[int, _Piece] = {id(p): p for p in emboli}
    rank = {id(p): n for n, p in enumerate(emboli)}

    def find(p: _Piece) -> _Piece:
        while root[id(p)] is not p:
            p = root[id(p)]
        return p

    for a, first in enumerate(emboli):
        for second in emboli[a + 1 :]:
            if first.candidate is second.candidate or find(first) is find(second):
                continue
            if _gap_mm(first.lps_mm, second.lps_mm) > reach_mm:
                continue
            if id(first) not in trees:
                trees[id(first)] = cKDTree(first.lps_mm)
            distance, _ = trees[id(first)].query(second.lps_mm, distance_upper_bound=reach_mm)
            if np.isfinite(distance).any():
                a_root, b_root = find(first), find(second)
                # The larger fragment (earlier in ``emboli``) holds the embolus.
                if rank[id(b_root)] < rank[id(a_root)]:
                    a_root, b_root = b_root, a_root
                root[id(b_root)] = a_root
    for piece in emboli:
        keep = find(piece)
        if keep is piece:
            continue
        keep.lps_mm = np.vstack([keep.lps_mm, piece.lps_mm])
        keep.hu = np.concatenate([keep.hu, piece.hu])
        piece.joined_to = keep


# --- linking --------------------------------------------------------------------------------


def _link_order(pieces: list[_Piece]) -> list[_Piece]:
    """Set each piece's parent (upstream neighbour) by breadth-first search from the vertebral
    pieces (else from the most upstream piece on the venous route); return them in that order
    so that every piece's id is larger than its parent's."""
    if not pieces:
        return []
    order: list[int] = []
    seen: set[int] = set()
    remaining = set(range(len(pieces)))
    while remaining:
        roots = [n for n in remaining if pieces[n].category == "intravertebral"]
        if not roots:
            roots = [
                min(
                    remaining,
                    key=lambda n: (ROUTE_RANK.get(pieces[n].category, 1), -len(pieces[n].lps_mm)),
                )
            ]
        queue = deque(sorted(roots, key=lambda n: -len(pieces[n].lps_mm)))
        seen.update(queue)
        while queue:
            n = queue.popleft()
            order.append(n)
            remaining.discard(n)
            # Nearer the vertebra first: a vein before the cast it feeds.
            for m in sorted(
                pieces[n].neighbours, key=lambda m: ROUTE_RANK.get(pieces[m].category, 1)
            ):
                if m not in seen:
                    seen.add(m)
                    pieces[m].parent = n
                    queue.append(m)
    return [pieces[n] for n in order]


def _treated_vertebrae(pieces: list[_Piece]) -> list[_Piece]:
    return [p for p in pieces if p.category == "intravertebral" and p.id]


def _nearby_treated(piece: _Piece, treated: list[_Piece]) -> _Piece | None:
    """Treated cement within YEOM_MAX_GAP_MM of a first-order leak that is continuous with none:
    the leak still left that vertebra."""
    best, best_mm = None, YEOM_MAX_GAP_MM
    for body in treated:
        if _gap_mm(piece.lps_mm, body.lps_mm) > best_mm:
            continue
        tree = cKDTree(body.lps_mm[:: max(1, len(body.lps_mm) // 20000)])
        distance, _ = tree.query(piece.lps_mm[:: max(1, len(piece.lps_mm) // 5000)])
        if float(distance.min()) <= best_mm:
            best, best_mm = body, float(distance.min())
    return best


# --- measuring ------------------------------------------------------------------------------


def _finding(
    piece: _Piece,
    pieces: list[_Piece],
    all_pieces: list[_Piece],
    treated: list[_Piece],
    ctx: _Context,
    series_index: int,
) -> Finding:
    volume = ctx.volume
    lps = piece.lps_mm
    centroid = lps.mean(axis=0)
    low, high = lps.min(axis=0), lps.max(axis=0)
    length_mm, diameter_mm = _extents_mm(lps, _voxel_mm(volume))
    volume_ml = len(lps) * volume.voxel_volume_ml
    category = piece.category
    shape = shape_name(length_mm, volume_ml)
    if category in ("ivc", "azygos", "svc") and length_mm >= CAST_MIN_LENGTH_MM:
        shape = "cast"
    if category == "intravertebral" and shape == "linear":
        shape = "amorphous"  # a fill along the needle track is still a fill
    upstream = piece.upstream
    connected_to = upstream.id if upstream is not None and upstream.id else None
    yeom = _yeom(piece, upstream)
    side, lung_zone, lobe, central = _side_and_lung(piece, centroid, ctx)
    level, level_offset = _level(piece, pieces, centroid, treated, ctx)
    compromise = None
    if category in ("epidural", "foraminal"):
        compromise = _canal_compromise_pct(lps, volume.voxel_volume_ml, ctx)
    base = getattr(piece.candidate, "confidence", None)
    confidence = DEFAULT_CANDIDATE_CONFIDENCE if base is None else float(base)
    confidence *= BASIS_FACTOR[piece.basis]
    if category == "other":
        confidence *= OTHER_FACTOR
    if piece.unconfirmed:
        confidence *= UNCONFIRMED_SPLIT_FACTOR
    if category in SPINAL_LEAKS and piece.basis == "anatomy" and not levels_known(ctx.anatomy):
        confidence *= UNANCHORED_SPINE_FACTOR
    return Finding(
        id=piece.id,
        series_index=series_index,
        category=category,
        category_basis=piece.basis,
        centroid_lps_mm=_point(centroid),
        bbox_lps_mm=(_point(low), _point(high)),
        volume_ml=round(volume_ml, 4),
        length_mm=round(length_mm, 2),
        max_diameter_mm=round(diameter_mm, 2),
        shape=shape,
        mean_hu=round(float(piece.hu.mean()), 1),
        max_hu=float(piece.hu.max()),
        side=side,
        confidence=round(float(np.clip(confidence, 0.0, 1.0)), 3),
        yeom_type=yeom,
        level=level,
        level_offset=level_offset,
        lung_zone=lung_zone,
        lobe=lobe,
        central=central,
        connected_to=connected_to,
        canal_compromise_pct=compromise,
    )


def _yeom(piece: _Piece, upstream: _Piece | None) -> str | None:
    """The Yeom type of the piece that leaves the vertebra; null downstream."""
    if piece.category == "intravertebral" or upstream is None:
        return None
    return YEOM_BY_CATEGORY.get(piece.category) if upstream.category == "intravertebral" else None


def _gap_mm(a: np.ndarray, b: np.ndarray) -> float:
    """Gap between two bounding boxes (0 when they overlap)."""
    gap = np.maximum(0.0, np.maximum(a.min(axis=0) - b.max(axis=0), b.min(axis=0) - a.max(axis=0)))
    return float(np.linalg.norm(gap))


def _side_and_lung(
    piece: _Piece, centroid: np.ndarray, ctx: _Context
) -> tuple[str, str | None, str | None, bool | None]:
    """DESIGN.md §3: a pulmonary finding's side is its lung's; any other's is its x against the
    canal centre (or, without one, the CT's bone column) at its height."""
    x_mid = float(ctx.midline.x_at(float(centroid[2])))
    side = side_of(float(centroid[0]), x_mid)
    if piece.category != "pulmonary_artery":
        return side, None, None, None
    anatomy = ctx.anatomy
    if anatomy is None:
        return ("right" if centroid[0] < x_mid else "left"), None, None, None
    right = float(anatomy.mask_at("lung_right", piece.lps_mm).mean())
    left = float(anatomy.mask_at("lung_left", piece.lps_mm).mean())
    if right or left:
        lung_side = "right" if right >= left else "left"
    else:
        lung_side = "right" if centroid[0] < x_mid else "left"
    info = anatomy.lungs.get(lung_side)
    zone = None if info is None else info.zone_of(float(centroid[2]))
    central = None
    if info is not None:
        in_lung = np.array([max(right, left) >= 0.5])
        central = bool(is_central(centroid[None, :], info, in_lung=in_lung)[0])
    lobe = None
    shares = {
        lobe_name: float(anatomy.mask_at(name, piece.lps_mm).mean())
        for name, lobe_name in LOBE_MASKS.items()
        if name in anatomy.masks and name.endswith(lung_side)
    }
    if shares and max(shares.values()) > 0:
        lobe = max(shares, key=lambda k: shares[k])
    return lung_side, zone, lobe, central


def _level(
    piece: _Piece,
    pieces: list[_Piece],
    centroid: np.ndarray,
    treated: list[_Piece],
    ctx: _Context,
) -> tuple[str | None, int | None]:
    """The nearest vertebral level (the level a leak left, for first-order leaks continuous with
    a treated body); with levels unknown, the offset from the nearest treated body instead."""
    anatomy = ctx.anatomy
    if anatomy is None or not anatomy.vertebrae:
        return None, None
    source = piece
    for _ in range(len(pieces)):  # bounded walk up the chain of first-order leaks
        if source.category not in FIRST_ORDER or source.upstream is None:
            break
        source = source.upstream
    if source.category != "intravertebral":
        source = piece
    index = _vertebra_index(source, anatomy)
    if levels_known(anatomy):
        return (None if index is None else anatomy.vertebrae[index].level), None
    if index is None:
        return None, None
    treated_idx = [i for i in (_vertebra_index(t, anatomy) for t in treated) if i is not None]
    if not treated_idx:
        return None, None
    nearest = min(treated_idx, key=lambda i: abs(i - index))
    return None, int(nearest - index)  # vertebrae run cranial -> caudal: above is positive


def _vertebra_index(piece: _Piece, anatomy: Anatomy) -> int | None:
    if piece.vertebra is not None:
        return piece.vertebra
    z = float(piece.lps_mm[:, 2].mean())
    if piece.category == "intravertebral" and piece.mask_name:
        level = piece.mask_name.removeprefix("vertebral_body_")
        named = [n for n, v in enumerate(anatomy.vertebrae) if v.level == level]
        if named:
            piece.vertebra = named[0]
            return piece.vertebra
    piece.vertebra = nearest_vertebra(anatomy.vertebrae, z)
    return piece.vertebra


def _canal_compromise_pct(lps_mm: np.ndarray, voxel_ml: float, ctx: _Context) -> float | None:
    """Cement cross-section over canal cross-section on the worst 2 mm axial slab, in %."""
    anatomy = ctx.anatomy
    if anatomy is None or "spinal_canal" not in anatomy.masks:
        return None
    grid = anatomy.grid
    canal = anatomy.masks["spinal_canal"]
    k = np.rint(grid.to_index(lps_mm)[:, 2]).astype(int)
    worst = 0.0
    for kk, count in zip(*np.unique(k, return_counts=True), strict=True):
        if not 0 <= kk < canal.shape[2]:
            continue
        canal_mm2 = float(canal[:, :, kk].sum()) * grid.spacing_mm**2
        if canal_mm2 <= 0:
            continue
        cement_mm2 = count * voxel_ml * 1000.0 / grid.spacing_mm
        worst = max(worst, cement_mm2 / canal_mm2 * 100.0)
    return round(min(worst, 100.0), 1)


def _voxel_mm(volume: CTVolume) -> float:
    return float(min(volume.spacing_mm))


def _extents_mm(points_mm: np.ndarray, voxel_mm: float) -> tuple[float, float]:
    """Extent along the first and second principal axes (plus one voxel for its own size)."""
    if len(points_mm) < 2:
        return voxel_mm, voxel_mm
    sample = points_mm[:: max(1, len(points_mm) // 20000)]
    centred = sample - sample.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = (points_mm - sample.mean(axis=0)) @ axes.T
    spans = projected.max(axis=0) - projected.min(axis=0) + voxel_mm
    return float(spans[0]), float(spans[1]) if len(spans) > 1 else voxel_mm


def _z_extent(points_mm: np.ndarray) -> float:
    return float(points_mm[:, 2].max() - points_mm[:, 2].min())


def _point(values: np.ndarray) -> tuple[float, float, float]:
    return round(float(values[0]), 2), round(float(values[1]), 2), round(float(values[2]), 2)
