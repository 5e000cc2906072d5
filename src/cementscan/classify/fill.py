"""Whether cement split off a vertebral fill lies in bone: the CT in-plane around it, cement excluded.

A radiologist calls cement intradiscal only beyond the endplate, in the disc space, and
paravertebral only outside the cortex; a piece of one blob that sits in trabecular bone is more of
the fill, whatever a coarse disc or body mask says (a disc mask placed across a cemented body, a
body mask smaller than the body). The CT tells bone from disc and soft tissue in the ring of
voxels around the cement in each axial slice (the slice through a disc shows disc tissue around
the leak, the slice through a body shows trabecular bone and cortex), but only where the fill's
own ring reads as bone: osteoporotic or noisy bone can be as dark as a disc, and then the CT
cannot tell and the anatomy's split stands.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cementscan.boxes import grow_box
from cementscan.io.volume import CTVolume

# The ring: in-plane, beyond cement's partial-volume rim (the scanner's blur, 1-3 mm) and within
# a few millimetres of the cement, where the tissue it sits in lies.
RING_INNER_MM = 2.0
# A piece no deeper than this beyond the fill, and nowhere as dense as the fill, is the fill's
# own blur where the scanner spreads it past a body mask's edge: a leak protrudes further.
FILL_RIM_MM = 2.0
RING_OUTER_MM = 6.0
# The fill's ring must read as bone (cancellous bone +150..+400 HU with its cortex; disc and
# muscle 40-100 HU, clinical-evidence.md §4) for the CT to tell the two apart.
BONY_RING_MIN_HU = 120.0
# A piece whose ring is at most this much darker than the fill's lies in the same bone.
RING_MARGIN_HU = 30.0
MIN_RING_VOXELS = 8


class RingProbe:
    """Median HU of the in-plane ring around pieces of one candidate (all cement left out)."""

    def __init__(self, volume: CTVolume, labels: np.ndarray, box: tuple[slice, ...]) -> None:
        self.z_axis = volume.index_axis_along(2)
        spacing = np.asarray(volume.spacing_mm, float)
        pad = [
            0 if a == self.z_axis else int(np.ceil(RING_OUTER_MM / spacing[a])) + 1
            for a in range(3)
        ]
        self.big = grow_box(box, pad, volume.shape)
        self.offset = tuple(s.start - b.start for s, b in zip(box, self.big, strict=True))
        # In-plane distances only: the through-plane step is made too large to count.
        self.sampling = [1e6 if a == self.z_axis else float(spacing[a]) for a in range(3)]
        self.hu = volume.hu[self.big]
        cement = labels[self.big] > 0
        distance = ndimage.distance_transform_edt(~cement, sampling=self.sampling)
        self.ring = (distance > RING_INNER_MM) & (distance <= RING_OUTER_MM)

    def median_hu(self, member: np.ndarray) -> float | None:
        """Median HU of the ring within RING_OUTER_MM (in-plane) of ``member`` (a mask on the
        candidate's box); None when too few ring voxels lie there."""
        piece = np.zeros(self.ring.shape, bool)
        piece[tuple(slice(o, o + n) for o, n in zip(self.offset, member.shape, strict=True))] = (
            member
        )
        near = ndimage.distance_transform_edt(~piece, sampling=self.sampling) <= RING_OUTER_MM
        values = self.hu[near & self.ring]
        if values.size < MIN_RING_VOXELS:
            return None
        return float(np.median(values))


def in_fill_rim(
    piece_lps_mm: np.ndarray, piece_hu: np.ndarray, fill_lps_mm: np.ndarray, fill_hu: np.ndarray
) -> bool:
    """Whether a piece touching a fill is only that fill's partial-volume rim (FILL_RIM_MM)."""
    if float(piece_hu.max()) >= float(np.median(fill_hu)):
        return False
    # A small tolerance: voxel centres two pixels of 0.98 mm away are "within 2 mm".
    depth_mm, _ = cKDTree(fill_lps_mm).query(piece_lps_mm, distance_upper_bound=FILL_RIM_MM + 0.1)
    return bool(np.isfinite(depth_mm).all())


def in_fill_bone(piece_hu: float | None, fill_hu: float | None) -> bool | None:
    """Whether a piece lies in the same bone as the fill it touches (True/False), or None when
    the CT cannot tell (the fill's ring does not read as bone, or a ring is missing)."""
    if piece_hu is None or fill_hu is None or fill_hu < BONY_RING_MIN_HU:
        return None
    return piece_hu >= fill_hu - RING_MARGIN_HU
