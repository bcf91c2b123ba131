"""load_checkpoint: every way a file can be wrong is one line that names the file, and a file
that would run code when unpickled is refused without running it."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from featherface.errors import FeatherFaceError
from featherface.models import build_model
from featherface.models.checkpoint import load_checkpoint, save_checkpoint

ARCH = "retinaface-mnet025"
REFUSED_CODE = "not a plain-tensor checkpoint (refused to unpickle code)"


class _Payload:
    """Unpickling this object creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    save_checkpoint(path, ARCH, build_model(ARCH))
    return path


def failure(path: Path) -> str:
    """The message of ``load_checkpoint(path)``'s error, checked to be one line naming ``path``."""
    with pytest.raises(FeatherFaceError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def test_round_trip(saved: Path) -> None:
    assert sum(p.numel() for p in load_checkpoint(saved).parameters()) == 426_608


@pytest.mark.parametrize("writer", ["checkpoint", "pickle-2", "pickle-default"])
def test_unsafe_file_is_refused_without_running(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    if writer == "checkpoint":
        payload = {"format": 1, "arch": ARCH, "config": {}, "state_dict": _Payload(marker)}
        torch.save(payload, path)
    else:
        protocol = 2 if writer == "pickle-2" else pickle.DEFAULT_PROTOCOL
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    assert failure(path) == REFUSED_CODE
    assert not marker.exists()


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save({"format": 1, "arch": ARCH, "config": {}, "model": torch.nn.Linear(2, 2)}, path)
    assert failure(path) == REFUSED_CODE


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated_file(saved: Path, tmp_path: Path, fraction: float) -> None:
    data = saved.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    reason = failure(path)
    assert reason.startswith("not a readable torch checkpoint (") and "truncated?" in reason


def test_truncated_legacy_file(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": torch.ones(100)}, legacy, _use_new_zipfile_serialization=False)
    path = tmp_path / "truncated.pt"
    for cut in range(1, legacy.stat().st_size, 7):
        path.write_bytes(legacy.read_bytes()[:cut])
        assert failure(path) == "not a readable torch checkpoint (the file ends early: truncated?)"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.touch()
    assert failure(path) == "empty file (0 bytes), not a torch checkpoint"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"arch: retinaface-mnet025\n", "neither a zip archive nor a pickle"),
        (b"\x80\x02\xff\xff garbage", "damaged pickle data"),
    ],
)
def test_not_a_torch_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    assert failure(path) == f"not a readable torch checkpoint ({reason})"


def test_foreign_zip_archive(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert failure(path).startswith("not a readable torch checkpoint (damaged or foreign zip")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"weights": torch.zeros(1)}, "not a featherface checkpoint (format 1)"),
        ({"format": 1, "arch": ARCH, "state_dict": {}}, "missing key 'config'"),
        ({"format": 1, "config": {}, "state_dict": {}}, "missing key 'arch'"),
        ({"format": 1, "arch": ARCH, "config": {}}, "missing key 'state_dict'"),
        ({"format": 1, "arch": 3, "config": {}, "state_dict": {}}, "'arch' is int"),
        ({"format": 1, "arch": ARCH, "config": [], "state_dict": {}}, "'config' is not a dict"),
        ({"format": 1, "arch": ARCH, "config": {}, "state_dict": [1]}, "'state_dict' is list"),
        ({"format": 1, "arch": "nope", "config": {}, "state_dict": {}}, "unknown model 'nope'"),
        ({"format": 1, "arch": ARCH, "config": {"x": 1}, "state_dict": {}}, "takes no option"),
        ({"format": 1, "arch": ARCH, "config": {}, "state_dict": {}}, "weights do not fit"),
    ],
)
def test_wrong_content(tmp_path: Path, payload: dict, reason: str) -> None:
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    assert reason in failure(path)


def test_missing_file(tmp_path: Path) -> None:
    assert failure(tmp_path / "absent.pt") == "checkpoint not found"


def test_read_weights_file_names_a_folder(tmp_path: Path) -> None:
    from featherface.models.checkpoint import read_weights_file

    with pytest.raises(FeatherFaceError, match="is a folder"):
        read_weights_file(tmp_path)
