"""Finding the studies under a batch root: DICOM folders grouped by study, volume files, skips."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from warnings import catch_warnings, simplefilter

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from cementscan.cohort.records import StudyInput
from cementscan.errors import InputError
from cementscan.io.dicom import DICOMDIR_SOP_CLASS, series_key
from cementscan.io.image import image_format

# The header fields discovery needs: reading only these keeps a walk over an archive fast.
HEADER_TAGS = (
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "FrameOfReferenceUID",
    "Modality",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "Rows",
    "Columns",
    "ImageOrientationPatient",
    "ImagePositionPatient",
)
# Data files that a header file (.mhd, .nhdr) points to: part of that study, not skipped.
SIDECAR_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".img", ".dat")


@dataclass(frozen=True)
class SkippedInput:
    """A file or folder under the root that is not analysed, and why (path relative to root)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """The studies found under a root (in key order) and what was skipped."""

    root: Path
    studies: tuple[StudyInput, ...]
    skipped: tuple[SkippedInput, ...]
    dicom_series: dict[str, int]  # study key -> number of DICOM series (absent: a volume file)
    input_bytes: dict[str, int]  # study key -> size of its files


@dataclass
class _DicomGroup:
    """The DICOM image files of one StudyInstanceUID (or of one folder when the UID is blank)."""

    uid: str | None
    files: list[Path]
    headers: list[Dataset]


def discover_studies(root: Path, exclude: Sequence[Path] = ()) -> Discovery:
    """Every study under ``root``: each NIfTI/NRRD/MetaImage file is one study; DICOM files are
    grouped by StudyInstanceUID (a study may hold several series in several folders).

    Folders in ``exclude`` (the batch's own output folder when it lies inside the root) are not
    searched. Raises InputError when ``root`` is not a readable folder.
    """
    if not Path(root).is_dir():
        raise InputError("not a folder" if Path(root).exists() else "no such folder", root)
    if not os.access(root, os.R_OK | os.X_OK):
        raise InputError("permission denied (not readable)", root)
    root = Path(root).resolve()  # absolute input paths: workers may run elsewhere
    scan = _scan(root, {p.resolve() for p in exclude})
    studies: list[StudyInput] = []
    skipped: list[SkippedInput] = []
    series_counts: dict[str, int] = {}
    sidecars = _sidecars(scan.volume_files, scan.other_files)
    sizes: dict[str, int] = {}
    for path in scan.volume_files:
        key = _relative(path, root)
        fingerprint, sizes[key] = _fingerprint([path, *sidecars.get(path, [])], root)
        studies.append(StudyInput(key, (str(path),), fingerprint, patient_hint=key))
    claimed = {p for files in sidecars.values() for p in files}
    skipped.extend(
        SkippedInput(_relative(p, root), "not a CT volume file or DICOM")
        for p in scan.other_files
        if p not in claimed
    )

    owner = _subtree_owners(scan.groups)
    unreadable, non_image = dict(scan.unreadable), list(scan.non_image)
    for group_id, group in scan.groups.items():
        result = _dicom_study(group_id, group, owner, root)
        if isinstance(result, SkippedInput):
            skipped.append(result)
            continue
        study, folders = result
        # Other files inside a study's folders are the study's: analyze reads (or reports) them.
        attached = [p for p in [*unreadable, *non_image] if any(_is_under(p, f) for f in folders)]
        for path in attached:
            unreadable.pop(path, None)
        non_image = [p for p in non_image if p not in attached]
        fingerprint, sizes[study.key] = _fingerprint(group.files + attached, root)
        studies.append(replace(study, fingerprint=fingerprint))
        series_counts[study.key] = len({series_key(ds)[0] for ds in group.headers})
    skipped.extend(SkippedInput(_relative(p, root), why) for p, why in unreadable.items())
    for folder in sorted({p.parent for p in non_image}):  # one line per folder, not per file
        shown = _relative(folder, root) if folder != root else "."
        skipped.append(SkippedInput(shown, "DICOM without images (reports, presentation states)"))
    _check_unique_keys(studies)
    return Discovery(
        root=root,
        studies=tuple(sorted(studies, key=lambda s: s.key)),
        skipped=tuple(sorted(set(skipped), key=lambda s: (s.path, s.reason))),
        dicom_series=series_counts,
        input_bytes=sizes,
    )


@dataclass
class _Scan:
    """The files under a root, sorted by kind."""

    volume_files: list[Path] = field(default_factory=list)
    other_files: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)  # path -> reason
    non_image: list[Path] = field(default_factory=list)  # DICOM reports, presentation states
    groups: dict[str, _DicomGroup] = field(default_factory=dict)


def _scan(root: Path, excluded: set[Path]) -> _Scan:
    scan = _Scan()
    for path in _walk(root, excluded):
        if image_format(path) is not None:
            scan.volume_files.append(path)
            continue
        try:
            ds = _read_header(path)
        except InvalidDicomError:
            scan.other_files.append(path)
            continue
        except Exception as exc:  # truncated or garbled headers raise many kinds
            scan.unreadable[path] = f"unreadable DICOM file ({type(exc).__name__})"
            continue
        if str(ds.get("SOPClassUID", "") or "") == DICOMDIR_SOP_CLASS:
            continue  # an index of the files, not an image
        if "ImagePositionPatient" not in ds:
            scan.non_image.append(path)
            continue
        uid = _text(ds, "StudyInstanceUID")
        group_id = uid or f"blank-study-uid:{_relative(path.parent, root)}"
        group = scan.groups.setdefault(group_id, _DicomGroup(uid, [], []))
        group.files.append(path)
        group.headers.append(ds)
    return scan


def _walk(root: Path, excluded: set[Path]) -> Iterable[Path]:
    """Every regular file under ``root`` in a stable order, outside excluded folders and hidden
    entries (the batch's staging folders, .DS_Store and the like)."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in excluded
        )
        for name in sorted(filenames):
            if not name.startswith(".") and (here / name).is_file():
                yield here / name


def _read_header(path: Path) -> Dataset:
    with catch_warnings():
        simplefilter("ignore")  # damage is reported by analyze, once, as an input error
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
        if "SOPClassUID" not in ds and ds.file_meta is not None:
            ds.SOPClassUID = ds.file_meta.get("MediaStorageSOPClassUID", "")
        for _ in ds:  # values decode on first access: decode (and fail) here
            pass
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _sidecars(volume_files: list[Path], other_files: list[Path]) -> dict[Path, list[Path]]:
    """The data files beside .mhd/.nhdr headers (same folder, same stem)."""
    found: dict[Path, list[Path]] = {}
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for path in other_files:
        if path.name.lower().endswith(SIDECAR_SUFFIXES):
            by_folder[path.parent].append(path)
    for path in volume_files:
        fmt_suffix = path.suffix.lower()
        if fmt_suffix not in (".mhd", ".nhdr"):
            continue
        stem = path.name[: -len(fmt_suffix)]
        found[path] = [p for p in by_folder.get(path.parent, []) if p.name.startswith(stem + ".")]
    return found


def _subtree_owners(groups: dict[str, _DicomGroup]) -> dict[Path, set[str]]:
    """Folder -> the DICOM groups with files anywhere below it."""
    owners: dict[Path, set[str]] = defaultdict(set)
    for group_id, group in groups.items():
        for folder in {p.parent for p in group.files}:
            for ancestor in (folder, *folder.parents):
                if group_id in owners[ancestor]:
                    break
                owners[ancestor].add(group_id)
    return owners


def _dicom_study(
    group_id: str, group: _DicomGroup, owner: dict[Path, set[str]], root: Path
) -> tuple[StudyInput, list[Path]] | SkippedInput:
    """The study of one DICOM group and its input folders, or why it is skipped.

    ``analyze`` reads every DICOM file below the folders it is given, so a study's folders must
    hold no other study: the common folder of its files when that one is pure, else each of its
    own folders.
    """
    folders = sorted({p.parent for p in group.files})
    common = Path(os.path.commonpath(folders))
    shown = _relative(common, root) if common != root else "."
    modalities = sorted({_text(ds, "Modality").upper() or "unknown" for ds in group.headers})
    if "CT" not in modalities:
        return SkippedInput(shown, f"modality {', '.join(modalities)}, not CT")
    if owner[common] == {group_id}:
        chosen = [common]
    else:
        chosen = [f for f in folders if not any(g in f.parents for g in folders)]
        mixed = [f for f in chosen if owner[f] != {group_id}]
        if mixed:
            return SkippedInput(
                _relative(mixed[0], root) if mixed[0] != root else ".",
                f"files of {len(owner[mixed[0]])} studies in one folder; cementscan batch "
                "needs each study in its own folder",
            )
    if len(chosen) == 1 and chosen[0] != root:
        key = _relative(chosen[0], root)
    else:
        key = group.uid or group_id
    first = group.headers[0]
    patient_id = _text(first, "PatientID")
    name_and_birth = " ".join(
        t for t in (_text(first, "PatientName"), _text(first, "PatientBirthDate")) if t
    )
    study = StudyInput(
        key=key,
        paths=tuple(str(f) for f in chosen),
        fingerprint="",
        patient_id=patient_id,
        patient_hint=name_and_birth or key,
        study_uid=group.uid,
    )
    return study, chosen


def _fingerprint(files: Iterable[Path], root: Path) -> tuple[str, int]:
    """SHA-256 of the files' relative paths, sizes and modification times (not their bytes:
    hashing terabytes of an archive would cost more than analysing it), and their total size."""
    digest = hashlib.sha256()
    total_bytes = 0
    for path in sorted(files):
        stat = path.stat()
        total_bytes += stat.st_size
        digest.update(f"{_relative(path, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest(), total_bytes


def _check_unique_keys(studies: list[StudyInput]) -> None:
    seen: set[str] = set()
    for study in studies:
        if study.key in seen:
            raise InputError(f"two studies under the root have the same key {study.key!r}")
        seen.add(study.key)
