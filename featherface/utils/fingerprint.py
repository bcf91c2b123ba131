"""SHA-256 fingerprints of code and files: the keys that decide whether earlier work is reused.

A training stage resumes its working files, and the ``evaluate`` stage reuses a training stage's
validation detections, only when these fingerprints of their inputs are unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PREPARED_TABLES: tuple[str, str] = ("images.parquet", "faces.parquet")


def code_fingerprint() -> str:
    """SHA-256 over the path and bytes of every ``.py`` file of the ``featherface`` package.

    When DVC reruns a stage because its code changed, work done by the previous code is discarded
    instead of reused.
    """
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(prepare_dir: Path) -> dict[str, str]:
    """SHA-256 of the prepared tables (``images.parquet``, ``faces.parquet``) that are present in
    ``prepare_dir``, by file name."""
    return {
        name: file_sha256(prepare_dir / name)
        for name in PREPARED_TABLES
        if (prepare_dir / name).is_file()
    }
