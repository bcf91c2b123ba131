"""This package's checkpoint format: tensors and plain data only, never pickled modules.

A checkpoint is a dict ``{"format": 1, "arch": <registry name>, "config": <builder keyword
arguments>, "state_dict": <tensors>}`` saved with :func:`torch.save`. Loading uses
``weights_only=True`` (safe for untrusted files) and rebuilds the network through the registry,
so a file never needs the code that produced it beyond the builder.

:func:`read_weights_file` opens the files of :func:`load_checkpoint` and of the ImageNet backbone
loader (:func:`featherface.models.backbone.load_imagenet_weights`): it never runs code from the
file, and turns every way a file can be wrong (missing, empty, truncated, not a torch file, a
pickle that would call code) into one :class:`FeatherFaceError` line that starts with the path.
"""

from __future__ import annotations

import io
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featherface.errors import FeatherFaceError
from featherface.models.registry import build_model
from featherface.utils.atomic import save_torch

FORMAT_VERSION = 1
REFUSED_CODE = "not a plain-tensor checkpoint (refused to unpickle code)"

# Messages of torch's weights-only unpickler (and of torch.load with weights_only=True) that mean
# "this file asks for something other than tensors and plain containers".
_REFUSAL_MARKERS = (
    "Unsupported global",
    "is blocked",
    "Trying to call reduce",
    "Can only create new object",
    "Can only build",
    "persistent_load",
)
# Pickle opcodes that import a name (and so can lead to calling it).
_IMPORT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST"}
_SCAN_LIMIT = 64 * 1024 * 1024
# Words of pickletools' errors for a stream that ends before its STOP opcode.
_CUT_SHORT = ("exhausted", "remain", "not enough data", "no newline")


def _pickle_stream(path: Path) -> bytes:
    """The bytes of the file's main pickle: ``*/data.pkl`` of a zip checkpoint, else the file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("data.pkl")]
            return archive.read(names[0])[:_SCAN_LIMIT] if names else b""
    with path.open("rb") as file:
        return file.read(_SCAN_LIMIT)


def _scan_pickles(path: Path) -> tuple[bool, str]:
    """Read the file's pickle opcodes without running them: (imports a name, state), the state
    ``"complete"``, ``"truncated"`` (a stream cut short by the end of the data) or ``"damaged"``.

    A legacy checkpoint is several pickles in a row (magic number, protocol, system info, the
    object, the storage keys), a zip checkpoint one ``data.pkl``.
    """
    imports = False
    try:
        data = _pickle_stream(path)
    except (OSError, zipfile.BadZipFile, KeyError):
        return False, "damaged"
    stream = io.BytesIO(data)
    for _ in range(5):
        if stream.tell() >= len(data):
            break
        try:
            for op, _, _ in pickletools.genops(stream):
                imports = imports or op.name in _IMPORT_OPCODES
        except Exception as error:  # a damaged or cut-off stream
            text = str(error)
            cut = any(hint in text for hint in _CUT_SHORT)
            return imports, "truncated" if cut else "damaged"
    return imports, "complete"


def _refused_code(path: Path, message: str) -> bool:
    if "Cannot use ``weights_only=True``" in message:  # TorchScript, legacy .tar format
        return True
    if any(marker in message for marker in _REFUSAL_MARKERS):
        return _scan_pickles(path)[1] != "truncated"  # a name cut off by the end of the file
    # "Unsupported operand": an opcode the safe unpickler does not know. That is how it meets
    # pickle protocols 4 and 5 (FRAME, STACK_GLOBAL), in which plain ``pickle.dump`` writes.
    if "Unsupported operand" not in message:
        return False
    imports, state = _scan_pickles(path)
    return imports and state == "complete"


def _first_sentence(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    sentence = re.split(r"(?<=[a-z\)])\. ", line, maxsplit=1)[0].rstrip(".")
    return sentence[:200]


def _damage_reason(path: Path, head: bytes, error: BaseException) -> str:
    """``torch.load``'s error in a few words; ``head``: the first bytes of the file."""
    text = str(error).split("WeightsUnpickler error:")[-1]  # drop the advice to unpickle code
    if "central directory" in text:
        return "zip archive without its central directory: truncated?"
    if "PytorchStreamReader" in text or "inline_container" in text:
        detail = re.sub(r"^\[enforce fail at [^\]]*\][ .]*", "", text.split("zip archive: ")[-1])
        return f"damaged or foreign zip archive: {_first_sentence(detail)}"
    if isinstance(error, EOFError) or "unexpected EOF" in text:
        return "the file ends early: truncated?"
    if head.startswith(b"PK"):
        return f"damaged zip archive ({_first_sentence(text) or type(error).__name__}): truncated?"
    if not zipfile.is_zipfile(path):
        if not head.startswith(b"\x80"):  # every binary pickle starts with PROTO
            return "neither a zip archive nor a pickle"
        state = _scan_pickles(path)[1]
        if state == "truncated":
            return "the file ends early: truncated?"
        if state == "damaged":
            return "damaged pickle data"
    reason = _first_sentence(text)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


def read_weights_file(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, failures as one line.

    Raises:
        FeatherFaceError: ``<path>: not found``, ``<path>: empty file ...``,
            ``<path>: not a plain-tensor checkpoint (refused to unpickle code)`` when the file
            would need the unrestricted unpickler (code, modules, classes, TorchScript), or
            ``<path>: not a readable torch checkpoint (<reason>)`` for a damaged or foreign file.
    """
    path = Path(path)
    if path.is_dir():
        raise FeatherFaceError(f"{path}: is a folder, not a torch checkpoint")
    try:
        with path.open("rb") as file:
            head = file.read(4)
    except FileNotFoundError:
        raise FeatherFaceError(f"{path}: not found") from None
    except OSError as error:  # permissions, I/O errors
        raise FeatherFaceError(f"{path}: cannot read ({error.strerror or error})") from None
    if not head:
        raise FeatherFaceError(f"{path}: empty file (0 bytes), not a torch checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols and TorchScript
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on a foreign or damaged file
        if _refused_code(path, str(error)):
            raise FeatherFaceError(f"{path}: {REFUSED_CODE}") from None
        reason = _damage_reason(path, head, error)
    raise FeatherFaceError(f"{path}: not a readable torch checkpoint ({reason})")


def save_checkpoint(
    path: str | Path, arch: str, model: nn.Module, config: dict[str, Any] | None = None
) -> None:
    """Atomically write ``model``'s weights with the builder name and keyword arguments.

    ``config`` defaults to ``model.config`` when the model has one, else ``{}``.
    """
    payload = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "config": dict(config if config is not None else getattr(model, "config", {})),
        "state_dict": model.state_dict(),
    }
    save_torch(payload, path)


def _checkpoint_payload(path: Path) -> dict[str, Any]:
    """The checked content of one of our checkpoints: a dict of this format with ``arch`` (a
    model name), ``config`` and ``state_dict``; anything else is a one-line error."""
    if not path.is_file() and not path.is_dir():
        raise FeatherFaceError(f"{path}: checkpoint not found")
    payload = read_weights_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise FeatherFaceError(f"{path}: not a featherface checkpoint (format {FORMAT_VERSION})")
    missing = [key for key in ("arch", "config", "state_dict") if key not in payload]
    if missing:
        raise FeatherFaceError(f"{path}: not a featherface checkpoint (missing key {missing[0]!r})")
    if not isinstance(payload["arch"], str):
        kind = type(payload["arch"]).__name__
        raise FeatherFaceError(f"{path}: 'arch' is {kind}, expected a model name")
    return payload


def checkpoint_arch(path: str | Path) -> str:
    """The registry name stored in one of our checkpoints (checked as by
    :func:`load_checkpoint`)."""
    return str(_checkpoint_payload(Path(path))["arch"])


def load_checkpoint(path: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild and load a model saved by :func:`save_checkpoint` (``overrides`` go to the
    builder, e.g. ``deform_implementation``).

    Every failure is one :class:`FeatherFaceError` line starting with the path (see
    :func:`read_weights_file` for unreadable files).
    """
    path = Path(path)
    payload = _checkpoint_payload(path)
    arch, config, state_dict = payload["arch"], payload["config"], payload["state_dict"]
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise FeatherFaceError(f"{path}: 'config' is not a dict of builder keyword arguments")
    if not isinstance(state_dict, Mapping):
        raise FeatherFaceError(f"{path}: 'state_dict' is {type(state_dict).__name__}, not a dict")
    try:
        model = build_model(arch, **{**config, **overrides})
    except FeatherFaceError as error:
        raise FeatherFaceError(f"{path}: {error}") from None
    except (TypeError, ValueError) as error:
        raise FeatherFaceError(f"{path}: 'config' does not fit {arch}: {error}") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FeatherFaceError(f"{path}: weights do not fit {arch}: {first}") from None
    return model
