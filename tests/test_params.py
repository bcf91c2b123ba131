"""params.yaml: typed sections, unknown keys and wrong types rejected, every key commented."""

from __future__ import annotations

from pathlib import Path

import pytest

from featherface.errors import ParamsError
from featherface.params import Params, load_params
from tests.conftest import REPO_ROOT


def test_repository_params_load() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.source == "synthetic"
    assert params.data.synthetic.num_val > 0


PARAMS_FILES = ("params.yaml", "pipelines/paper-widerface.yaml", "pipelines/ci-smoke.yaml")


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_every_key_has_a_comment(name: str) -> None:
    for number, line in enumerate((REPO_ROOT / name).read_text().splitlines(), start=1):
        if ":" in line and not line.lstrip().startswith("#"):
            key, _, rest = line.partition(":")
            if rest.strip():  # a leaf key (section headers end with the colon)
                assert "#" in rest, f"{name}:{number}: key {key.strip()!r} has no comment"


def _keys(text: str) -> list[str]:
    return [line.split(":")[0] for line in text.splitlines() if line and line[0] != "#"]


@pytest.mark.parametrize("name", PARAMS_FILES[1:])
def test_presets_have_every_key_of_params_yaml(name: str) -> None:
    preset = (REPO_ROOT / name).read_text()
    assert _keys(preset) == _keys((REPO_ROOT / "params.yaml").read_text())
    load_params(REPO_ROOT / name)


def test_paper_preset_has_the_paper_settings() -> None:
    preset_path = REPO_ROOT / "pipelines" / "paper-widerface.yaml"
    preset = load_params(preset_path)
    assert preset.data.source == "widerface"
    assert preset.model.backbone_weights is not None
    for section in (preset.teacher, preset.distill):
        assert (section.image_size, section.batch_size, section.epochs) == (640, 32, 350)
        assert (section.optimizer, section.schedule, section.lr) == ("adamw", "onecycle", 1e-3)


def test_distill_section_is_a_training_run_plus_the_loss_weights() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.teacher.arch == "featherface-v1"
    assert params.distill.arch == "featherface-nano-b"
    assert params.distill.alpha > 0 and params.distill.temperature > 0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("data:\n  sorce: synthetic\n", "unknown key(s) ['data.sorce']"),
        ("data:\n  synthetic:\n    sed: 1\n", "unknown key(s) ['data.synthetic.sed']"),
        ("colour: red\n", "unknown key(s) ['colour']"),
        ("data:\n  source: imagenet\n", "data.source must be one of"),
        ("data:\n  synthetic:\n    num_train: many\n", "data.synthetic.num_train must be int"),
        ("data:\n  synthetic:\n    num_train: true\n", "data.synthetic.num_train must be int"),
        (
            "data:\n  synthetic:\n    min_faces: 5\n    max_faces: 2\n",
            "need 1 <= min_faces <= max_faces",
        ),
        ("data: [1, 2]\n", "data must be a mapping"),
        ("distill:\n  temperature: 0\n", "distill: temperature must be positive"),
        ("data:\n  source: [\n", "not valid YAML"),
    ],
)
def test_bad_params_are_rejected_with_the_file_name(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    assert str(caught.value).startswith(str(path))
    assert fragment in str(caught.value)


def test_ints_are_accepted_for_floats_and_defaults_fill_gaps(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, "data:\n  box_tolerance_px: 3\n"))
    assert params.data.box_tolerance_px == 3.0
    assert params.tracking.enabled is True


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
