"""Atomic file output: write under a temporary name beside the target, rename when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


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
