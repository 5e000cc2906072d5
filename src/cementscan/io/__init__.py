"""Loading CT series (DICOM, NIfTI, NRRD, MetaImage) into CTVolumes with exact LPS geometry."""

from cementscan.io.load import load_study, load_volume
from cementscan.io.volume import CTVolume, SkippedSeries, SourceInfo, Study
from cementscan.io.write import to_sitk, write_image_atomic, write_labels, write_volume

__all__ = [
    "CTVolume",
    "SkippedSeries",
    "SourceInfo",
    "Study",
    "load_study",
    "load_volume",
    "to_sitk",
    "write_image_atomic",
    "write_labels",
    "write_volume",
]
