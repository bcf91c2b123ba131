"""From downloaded archives onwards: torchvision's extraction of small archives we build, then
our readers on the layout it produces. The network calls are replaced by local copies."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torchvision.datasets.utils as tv_utils
import torchvision.datasets.widerface as tv_widerface

from featherface.cli import app
from featherface.data import download
from featherface.data.layout import read_annotations
from featherface.data.wider_mat import MatImage, write_ground_truth


def _zip_folder(source: Path, archive: Path, arcname_root: str) -> None:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(source.rglob("*")):
            bundle.write(path, Path(arcname_root) / path.relative_to(source))


@pytest.fixture
def archives(wider_folder: Path, tmp_path: Path) -> Path:
    """The official archive names, built from the hand-written folder."""
    import numpy as np

    folder = tmp_path / "archives"
    folder.mkdir()
    for split in ("train", "val", "test"):
        source = wider_folder / f"WIDER_{split}" if split != "test" else wider_folder / "WIDER_val"
        _zip_folder(source, folder / f"WIDER_{split}.zip", f"WIDER_{split}")
    _zip_folder(
        wider_folder / "wider_face_split", folder / "wider_face_split.zip", "wider_face_split"
    )
    attributes = {
        k: np.zeros(3, dtype=np.int64)
        for k in ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    }
    keep = {"easy": np.array([0]), "medium": np.array([0, 1]), "hard": np.array([0, 1, 2])}
    boxes = np.array([[5, 5, 40, 50], [60, 10, 12, 14], [70, 40, 8, 8]])
    write_ground_truth(
        tmp_path / "eval" / "ground_truth",
        [MatImage("0--Parade", "0_Parade_c", boxes, attributes, keep)],
    )
    _zip_folder(tmp_path / "eval", folder / "eval_tools.zip", "eval_tools")
    return folder


@pytest.fixture
def offline_downloads(archives: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fetched: list[str] = []

    def from_drive(file_id: str, root: str, filename: str, md5: str | None = None) -> None:
        fetched.append(filename)
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copy(archives / filename, Path(root) / filename)

    def from_url(url: str, download_root: str, md5: str | None = None, **_: object) -> None:
        name = url.rsplit("/", 1)[-1]
        fetched.append(name)
        Path(download_root).mkdir(parents=True, exist_ok=True)
        shutil.copy(archives / name, Path(download_root) / name)
        tv_utils.extract_archive(str(Path(download_root) / name))

    monkeypatch.setattr(tv_widerface, "download_file_from_google_drive", from_drive)
    monkeypatch.setattr(tv_widerface, "download_and_extract_archive", from_url)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", from_url)
    return fetched


def test_download_produces_a_readable_layout(offline_downloads: list[str], tmp_path: Path) -> None:
    root = download.download_widerface(tmp_path / "data")
    assert root == tmp_path / "data" / "widerface"
    assert sorted(offline_downloads) == sorted(
        [
            "WIDER_train.zip",
            "WIDER_val.zip",
            "WIDER_test.zip",
            "wider_face_split.zip",
            "eval_tools.zip",
        ]
    )
    images, faces = read_annotations(tmp_path / "data")
    assert len(images) == 3 and len(faces) == 5
    assert faces.loc[faces["image_id"] == 2, "keep_easy"].tolist() == [True, False, False]


def test_second_download_fetches_nothing(offline_downloads: list[str], tmp_path: Path) -> None:
    download.download_widerface(tmp_path / "data")
    count = len(offline_downloads)
    download.download_widerface(tmp_path / "data")
    assert len(offline_downloads) == count


def test_cli_download(offline_downloads: list[str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app, ["data", "download", "widerface", "--dest", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert "WIDER FACE is in" in result.output
    assert (
        tmp_path / "d" / "widerface" / "eval_tools" / "ground_truth" / "wider_hard_val.mat"
    ).is_file()
