"""Atomic file output: write under a temporary name beside the target, rename when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cementscan.errors import InputError


def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def output_folder(path: str | Path, *, create: bool = True) -> Path:
    """``path`` as an output folder (created unless ``create`` is False): an InputError when it
    is a file or cannot be created."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", out)
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder ({exc.strerror})", out) from None
    return out


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``.

    >>> with atomic_path("out/findings.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    final = Path(target)
    # Keep the real suffix last: writers such as SimpleITK pick the format from it.
    suffix = "".join(final.suffixes) or ".tmp"
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(out_dir: str | Path, published: list[Path] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder inside ``out_dir``; when the block ends without error,
    move everything in it into ``out_dir`` (a folder replaces a previous folder of that name)
    and append the paths to ``published``; on error nothing reaches ``out_dir``.

    >>> with staged_folder("out", written) as staging:  # doctest: +SKIP
    ...     (staging / "findings.json").write_text("{}")
    """
    out = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".cementscan-", dir=out))
    try:
        yield staging
        for entry in sorted(staging.iterdir()):
            target = out / entry.name
            if entry.is_dir() and target.is_dir():
                shutil.rmtree(target)
            entry.replace(target)
            if published is not None:
                published.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
