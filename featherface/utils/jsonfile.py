"""Reading a JSON file that a stage wrote, with one-line errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featherface.errors import FeatherFaceError


def read_json(path: Path, missing: str) -> Any:
    """The content of ``path``; a missing file is ``"<path>: <missing>"`` and malformed JSON
    ``"<path>:<line>: not valid JSON (<why>)"``, both as :class:`FeatherFaceError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeatherFaceError(f"{path}: {missing}") from None
    except json.JSONDecodeError as error:
        raise FeatherFaceError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
