"""params.yaml: typed sections, unknown keys and wrong types rejected, every key commented."""

from __future__ import annotations

import ast
import copy
import math
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from featherface.errors import ParamsError
from featherface.params import (
    DataParams,
    DistillParams,
    EvaluateParams,
    ExportParams,
    FinetuneParams,
    LaunchParams,
    Params,
    PostprocessSettings,
    PruneParams,
    TrainParams,
    build,
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
        ("distill:\n  temperature: 0\n", "distill.temperature must be positive"),
        ("train:\n  nnodes: 1\n", "unknown key(s) ['train']"),
        ("prune:\n  mask_interval: 2\n", "unknown key(s) ['prune.mask_interval']"),
        ("finetune:\n  mask_interval: 0\n", "finetune.mask_interval must be at least 1"),
        ("evaluate:\n  score_threshold: 1.0\n", "evaluate.score_threshold must be in [0, 1)"),
        ("export:\n  top_k: 0\n", "export.top_k must be at least 1"),
        ("export:\n  nms_iou: 2\n", "export.nms_iou must be in [0, 1]"),
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


# Every range check: one line, the file, the dotted key, the bound and the value.
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("teacher:\n  epochs: 0\n", "teacher.epochs must be at least 1, got 0"),
        ("teacher:\n  batch_size: 0\n", "teacher.batch_size must be at least 1, got 0"),
        ("teacher:\n  lr: -1\n", "teacher.lr must be greater than 0, got -1.0"),
        ("teacher:\n  lr: 0\n", "teacher.lr must be greater than 0, got 0.0"),
        ("teacher:\n  image_size: 0\n", "teacher.image_size must be at least 32, got 0"),
        ("teacher:\n  image_size: 31\n", "teacher.image_size must be at least 32, got 31"),
        ("teacher:\n  weight_decay: -0.1\n", "teacher.weight_decay must be 0 or more, got -0.1"),
        ("teacher:\n  momentum: 1.0\n", "teacher.momentum must be in [0, 1), got 1.0"),
        ("teacher:\n  momentum: -0.5\n", "teacher.momentum must be in [0, 1), got -0.5"),
        ("teacher:\n  warmup_fraction: 5\n", "teacher.warmup_fraction must be in (0, 1), got 5.0"),
        ("teacher:\n  warmup_fraction: 0\n", "teacher.warmup_fraction must be in (0, 1), got 0.0"),
        (
            "teacher:\n  milestones: [3, 2]\n",
            "teacher.milestones must be strictly increasing positive epochs, got (3, 2)",
        ),
        (
            "teacher:\n  milestones: [2, 2]\n",
            "teacher.milestones must be strictly increasing positive epochs, got (2, 2)",
        ),
        (
            "teacher:\n  milestones: [-1, 2]\n",
            "teacher.milestones must be strictly increasing positive epochs, got (-1, 2)",
        ),
        ("teacher:\n  gamma: 0\n", "teacher.gamma must be in (0, 1], got 0.0"),
        ("teacher:\n  gamma: 1.5\n", "teacher.gamma must be in (0, 1], got 1.5"),
        (
            "teacher:\n  grad_clip_norm: 0\n",
            "teacher.grad_clip_norm must be greater than 0, got 0.0",
        ),
        (
            "teacher:\n  bn_recalibration_batches: -1\n",
            "teacher.bn_recalibration_batches must be 0 or more, got -1",
        ),
        ("teacher:\n  num_workers: -1\n", "teacher.num_workers must be 0 or more, got -1"),
        ("teacher:\n  seed: -1\n", "teacher.seed must be in [0, 4294967295], got -1"),
        (
            "teacher:\n  seed: 4294967296\n",
            "teacher.seed must be in [0, 4294967295], got 4294967296",
        ),
        ("distill:\n  epochs: 0\n", "distill.epochs must be at least 1, got 0"),
        ("distill:\n  temperature: 0\n", "distill.temperature must be positive, got 0.0"),
        ("distill:\n  confidence: 2\n", "distill.confidence must be in [0, 1], got 2.0"),
        ("distill:\n  w_feat: -1\n", "distill.w_feat must be non-negative, got -1.0"),
        ("finetune:\n  batch_size: 0\n", "finetune.batch_size must be at least 1, got 0"),
        ("finetune:\n  lr: -0.001\n", "finetune.lr must be greater than 0, got -0.001"),
        ("finetune:\n  soft_epochs: -1\n", "finetune.soft_epochs must be 0 or more, got -1"),
        ("finetune:\n  mask_interval: 0\n", "finetune.mask_interval must be at least 1, got 0"),
        ("prune:\n  rate: 1.5\n", "prune.rate must be in (0, 1), got 1.5"),
        ("prune:\n  tolerance: 0\n", "prune.tolerance must be in (0, 1), got 0.0"),
        ("prune:\n  tolerance: 1\n", "prune.tolerance must be in (0, 1), got 1.0"),
        ("prune:\n  penalty: -1\n", "prune.penalty must be 0 or more, got -1.0"),
        ("prune:\n  lr: 0\n", "prune.lr must be greater than 0, got 0.0"),
        ("prune:\n  image_size: 16\n", "prune.image_size must be at least 32, got 16"),
        ("prune:\n  batch_size: 0\n", "prune.batch_size must be at least 1, got 0"),
        ("prune:\n  trial_steps: 0\n", "prune.trial_steps must be at least 1, got 0"),
        ("prune:\n  num_workers: -2\n", "prune.num_workers must be 0 or more, got -2"),
        ("prune:\n  seed: -1\n", "prune.seed must be in [0, 4294967295], got -1"),
        ("evaluate:\n  size: 16\n", "evaluate.size must be at least 32, got 16"),
        (
            "evaluate:\n  scales: []\n",
            "evaluate.scales must be a non-empty list of numbers > 0, got ()",
        ),
        (
            "evaluate:\n  scales: [0.5, 0]\n",
            "evaluate.scales must be a non-empty list of numbers > 0, got (0.5, 0.0)",
        ),
        ("evaluate:\n  batch_size: 0\n", "evaluate.batch_size must be at least 1, got 0"),
        ("evaluate:\n  nms_iou: 7.0\n", "evaluate.nms_iou must be in [0, 1], got 7.0"),
        ("export:\n  atol: -1\n", "export.atol must be 0 or more, got -1.0"),
        ("export:\n  opset: 16\n", "export.opset must be at least 17, got 16"),
        ("data:\n  box_tolerance_px: -1\n", "data.box_tolerance_px must be 0 or more, got -1.0"),
        (
            "data:\n  landmark_tolerance: -0.5\n",
            "data.landmark_tolerance must be 0 or more, got -0.5",
        ),
        ("launch:\n  nproc_per_node: 0\n", "launch.nproc_per_node must be at least 1, got 0"),
        ("launch:\n  nnodes: 0\n", "launch.nnodes must be at least 1, got 0"),
        ("teacher:\n  lr: .nan\n", "teacher.lr must be a finite number, got nan"),
        (
            "teacher:\n  grad_clip_norm: .inf\n",
            "teacher.grad_clip_norm must be a finite number, got inf",
        ),
        (
            "evaluate:\n  scales: [1.0, -.inf]\n",
            "evaluate.scales[1] must be a finite number, got -inf",
        ),
        ("teacher:\n  lr: " + "9" * 400 + "\n", "teacher.lr must be a finite number, got 999"),
    ],
)
def test_out_of_range_values_name_the_file_and_the_dotted_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_range_checks_hold_for_direct_construction_too() -> None:
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        TrainParams(epochs=0)
    with pytest.raises(ValueError, match="lr must be greater than 0, got nan"):
        TrainParams(lr=math.nan)
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        DistillParams(epochs=0)
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        DistillParams(temperature=0)  # the distillation weights keep their checks
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        FinetuneParams(epochs=0)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        EvaluateParams(batch_size=0)
    with pytest.raises(ValueError, match="tolerance must be in"):
        PruneParams(tolerance=math.nan)
    with pytest.raises(ValueError, match="landmark_tolerance must be 0 or more"):
        DataParams(landmark_tolerance=-1.0)
    with pytest.raises(ValueError, match="needs rdzv_endpoint as host:port"):
        LaunchParams(nnodes=2)
    assert TrainParams(schedule="step", milestones=(2, 5), gamma=1.0).milestones == (2, 5)
    assert EvaluateParams(size=32, scales=(0.25,)).size == 32


@pytest.mark.parametrize("image_size", [32, 33, 100, 257])
def test_image_size_needs_no_multiple_of_32(tmp_path: Path, image_size: int) -> None:
    """The backbone, BiFPN and priors work on ``ceil(side / stride)`` cells (bifpn.py,
    detection/priors.py), so any side from 32 up is accepted."""
    params = load_params(_write(tmp_path, f"teacher:\n  image_size: {image_size}\n"))
    assert params.teacher.image_size == image_size


def test_floats_written_with_an_exponent_are_accepted(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads ``1e-3`` as a string; a float key takes it as the number."""
    text = (
        "teacher:\n  lr: 1e-3\n  weight_decay: 5E-4\n"
        "prune:\n  lr: '2e-3'\n"
        "evaluate:\n  scales: [1e0, 5e-1]\n"
        "data:\n  box_tolerance_px: 1E+1\n"
    )
    params = load_params(_write(tmp_path, text))
    assert params.teacher.lr == 1e-3 and type(params.teacher.lr) is float
    assert params.teacher.weight_decay == 5e-4
    assert params.prune.lr == 2e-3
    assert params.evaluate.scales == (1.0, 0.5)
    assert params.data.box_tolerance_px == 10.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("teacher:\n  lr: nan\n", "teacher.lr must be a finite number, got 'nan'"),
        ("teacher:\n  lr: inf\n", "teacher.lr must be a finite number, got 'inf'"),
        ("teacher:\n  lr: -Infinity\n", "teacher.lr must be a finite number, got '-Infinity'"),
        ("teacher:\n  lr: 1e999\n", "teacher.lr must be a finite number, got '1e999'"),
        ("teacher:\n  lr: fast\n", "teacher.lr must be float, got 'fast'"),
        ("teacher:\n  lr: 1e-3x\n", "teacher.lr must be float, got '1e-3x'"),
        ("teacher:\n  lr: ''\n", "teacher.lr must be float, got ''"),
        ("teacher:\n  epochs: 1e3\n", "teacher.epochs must be int, got '1e3'"),
        ("teacher:\n  epochs: '4'\n", "teacher.epochs must be int, got '4'"),
        ("teacher:\n  epochs: 4.0\n", "teacher.epochs must be int, got 4.0"),
    ],
)
def test_strings_that_are_not_finite_numbers_stay_errors(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    assert str(caught.value) == f"{path}: {fragment}"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"data:\n  source: synth\xffetic\n", ":2: not valid UTF-8 (byte 0xff at offset 21)"),
        (b"data:\n  source: \x07\n", "not valid YAML"),  # PyYAML's message has several lines
        (b"1: a\nfoo: b\n", "unknown key(s) ['1', 'foo']"),  # keys of mixed types
        (b"teacher:\n  seed: 2001-02-30\n", "not valid YAML"),  # no such date
    ],
)
def test_unreadable_files_are_one_line_errors_naming_the_file(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    message = str(caught.value)
    assert message.startswith(f"{path}") and fragment in message
    assert "\n" not in message


def _leaves(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else key
        flat.update(_leaves(value, name) if isinstance(value, dict) else {name: value})
    return flat


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both else value
    return merged


@pytest.mark.parametrize("name", PARAMS_FILES)
def test_todays_files_load_to_their_written_values(name: str) -> None:
    """params.yaml and each preset merged over it pass every check, with the values written."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    if name != "params.yaml":
        raw = _merged(raw, yaml.safe_load((REPO_ROOT / name).read_text(encoding="utf-8")))
    params = build(Params, raw, REPO_ROOT / name)
    loaded = _leaves(asdict(params))
    for key, value in _leaves(raw).items():
        assert loaded[key] == (tuple(value) if isinstance(value, list) else value), key


NONSENSE = (
    -1, 0, -1.5, 10**400, -(10**400), math.nan, math.inf, -math.inf, "", "x", "1e-3", "nan",
    True, None, [], [1, "a"], {}, {"a": 1}, [[1]], [{"a": None}],
)  # fmt: skip


def test_every_key_takes_any_value_as_a_value_or_a_params_error() -> None:
    """Each leaf of params.yaml set to each nonsense value: a Params or a one-line ParamsError
    naming the file and the key, never another exception."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    source = Path("params.yaml")
    for key in _leaves(raw):
        section, *rest = key.split(".")
        for value in NONSENSE:
            mutated = {**raw, section: copy.deepcopy(raw[section])}
            node = mutated[section]
            for part in rest[:-1]:
                node = node[part]
            node[rest[-1]] = value
            try:
                build(Params, mutated, source)
            except ParamsError as error:
                message = str(error)
                assert message.startswith("params.yaml: ") and "\n" not in message, message
                assert section in message, message
