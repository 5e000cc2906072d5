"""Patient pseudonyms: a keyed hash of PatientID, stable across runs into the same output folder."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from cementscan.errors import InputError

SECRET_FILE = "pseudonym.key"
SECRET_BYTES = 32
PSEUDONYM_HEX_DIGITS = 12  # 48 bits: no collision expected below millions of patients


def load_or_create_secret(out_dir: Path) -> bytes:
    """OUTDIR/pseudonym.key: created once (mode 0600, 32 random bytes as hex), then reused.

    Whoever holds the key can test a guessed PatientID against a pseudonym; without it the
    pseudonyms reveal nothing, so keep it with the data and out of shared exports.
    """
    path = Path(out_dir) / SECRET_FILE
    if not path.exists():
        _create_secret(path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise InputError(
            f"damaged pseudonym key (expected {2 * SECRET_BYTES} hex digits); restore it from a "
            "backup, as a new key would give every patient a new pseudonym",
            path,
        )
    return secret


def _create_secret(path: Path) -> None:
    """Write the key under a temporary name and link it into place, so that a crash never leaves
    a partial key and two processes creating it at once end up with the same one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as tmp:
            tmp.write(secrets.token_bytes(SECRET_BYTES).hex() + "\n")
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            pass  # another process was first: use its key
    finally:
        os.unlink(tmp_name)


def patient_pseudonym(patient_id: str, patient_hint: str, secret: bytes) -> str:
    """``P-`` and 12 hex digits of HMAC-SHA256 of the PatientID, or of the hint when it is blank.

    >>> patient_pseudonym("12345", "", b"k" * 32)
    'P-3adb656e5a16'

    The two sources are hashed with different prefixes, so a PatientID never collides with a
    hint that happens to spell the same text.
    """
    patient_id = patient_id.strip()
    if patient_id:
        message = b"id\0" + patient_id.encode("utf-8")
    elif patient_hint.strip():
        message = b"hint\0" + patient_hint.strip().encode("utf-8")
    else:
        raise ValueError("a patient needs a PatientID or a hint to be pseudonymised")
    digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return f"P-{digest[:PSEUDONYM_HEX_DIGITS]}"
