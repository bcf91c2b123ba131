"""Error types shared by the whole package.

Every error that a user can fix by editing an input derives from :class:`FeatherFaceError`; the
CLI prints it as one line and exits with a non-zero status instead of showing a traceback.
"""

from __future__ import annotations

from pathlib import Path


class FeatherFaceError(Exception):
    """An error caused by user input (a file, a parameter) rather than by a bug."""


class AnnotationError(FeatherFaceError):
    """A malformed annotation or data file, located to a file and (when known) a line.

    ``str(error)`` reads ``path:line: problem`` (or ``path: problem`` without a line), the format
    compilers use, so editors and CI logs can jump to the place.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        location = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{location}: {problem}")


class ParamsError(FeatherFaceError):
    """A missing, unknown or ill-typed key in ``params.yaml`` or a preset."""
