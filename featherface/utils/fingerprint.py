"""SHA-256 fingerprints of code and files: the keys that decide whether earlier work is reused.

A training stage resumes its working files, and the ``evaluate`` stage reuses a training stage's
validation detections, only when these fingerprints of their inputs are unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from featherface.utils.imports import closure_files, package_root

PREPARED_TABLES: tuple[str, str] = ("images.parquet", "faces.parquet")


def code_fingerprint(*modules: str) -> str:
    """SHA-256 over the path (relative to the package folder) and bytes of every file of the
    code that ``modules`` (dotted names, such as ``"featherface.stages.teacher"``) run: the
    files of their :func:`~featherface.utils.imports.import_closure`, in sorted order.

    A caller names the modules its work depends on, so that editing code outside them (another
    stage, a test helper) leaves the fingerprint, and the work it guards, as it is, while editing
    code they import, even lazily inside a function, changes it: when DVC reruns a stage because
    its code changed, work done by the previous code is discarded instead of reused. Raises
    :class:`ValueError` without modules and :class:`ModuleNotFoundError` for an unknown one.
    """
    if not modules:
        raise ValueError("code_fingerprint needs the modules whose code the work depends on")
    package = package_root()
    digest = hashlib.sha256()
    for path in closure_files(*modules, root=package):
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
