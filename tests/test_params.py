"""params.yaml: typed sections, unknown keys and wrong types rejected, every key commented."""

from __future__ import annotations

import ast
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from featherface.errors import ParamsError
from featherface.params import (
    EvaluateParams,
    ExportParams,
    FinetuneParams,
    Params,
    PostprocessSettings,
    PruneParams,
    load_params,
)
from tests.helpers import REPO_ROOT


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


def test_params_package_is_a_leaf() -> None:
    """featherface.params imports only the standard library, yaml, featherface.errors and its own
    modules."""
    import featherface.params

    imported = set()
    for path in Path(featherface.params.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module is not None
                imported.add(node.module)
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names
        and name not in ("yaml", "featherface.errors")
        and not name.startswith("featherface.params.")
    }
    assert not outside and "featherface.params.data" in imported


def test_postprocess_settings_defaults_and_checks() -> None:
    settings = PostprocessSettings()
    assert (settings.score_threshold, settings.nms_iou, settings.top_k, settings.keep_k) == (
        0.02, 0.4, 5000, 750,
    )  # fmt: skip
    for bad, name in (
        ({"score_threshold": 1.0}, "score_threshold"),
        ({"score_threshold": -0.1}, "score_threshold"),
        ({"nms_iou": 1.5}, "nms_iou"),
        ({"top_k": 0}, "top_k"),
        ({"keep_k": 0}, "keep_k"),
    ):
        with pytest.raises(ValueError, match=f"{name} must be .*, got {next(iter(bad.values()))}"):
            PostprocessSettings(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("section", [EvaluateParams, ExportParams])
def test_evaluate_and_export_share_the_postprocess_settings(section: type) -> None:
    assert issubclass(section, PostprocessSettings)
    params = section(score_threshold=0.5, nms_iou=0.3, top_k=40, keep_k=7)
    plain = params.postprocess()
    assert type(plain) is PostprocessSettings
    assert plain == PostprocessSettings(0.5, 0.3, 40, 7)
    assert section().postprocess() == PostprocessSettings()
    with pytest.raises(ValueError, match="keep_k must be at least 1"):
        section(keep_k=0)


def test_mask_interval_belongs_to_finetune() -> None:
    assert "mask_interval" not in {f.name for f in fields(PruneParams)}
    assert FinetuneParams().mask_interval == 1
    with pytest.raises(ValueError, match="mask_interval must be at least 1, got 0"):
        FinetuneParams(mask_interval=0)


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
        ("train:\n  nnodes: 1\n", "unknown key(s) ['train']"),
        ("prune:\n  mask_interval: 2\n", "unknown key(s) ['prune.mask_interval']"),
        ("finetune:\n  mask_interval: 0\n", "finetune: mask_interval must be at least 1"),
        ("evaluate:\n  score_threshold: 1.0\n", "evaluate: score_threshold must be in [0, 1)"),
        ("export:\n  top_k: 0\n", "export: top_k must be at least 1"),
        ("export:\n  nms_iou: 2\n", "export: nms_iou must be in [0, 1]"),
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


def test_launch_and_finetune_sections(tmp_path: Path) -> None:
    text = "launch:\n  nproc_per_node: 2\nfinetune:\n  mask_interval: 3\n"
    params = load_params(_write(tmp_path, text))
    assert params.launch.nproc_per_node == 2
    assert params.finetune.mask_interval == 3
    assert load_params(REPO_ROOT / "params.yaml").finetune.mask_interval == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
