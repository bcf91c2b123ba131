"""Deployable files of the final Nano-B and of the teacher, checked for parity: the ``export``
stage's work (:func:`export_checkpoints`).

For each checkpoint, named by its stem (``model``: the pruned, fine-tuned Nano-B, which evaluate
scores as ``stages/export/model.onnx``; ``teacher``: FeatherFace V1), the output folder gets:

- ``<stem>.onnx``: the raw-output graph (:func:`featherface.export.onnx_export.raw_graph`,
  the contract of :mod:`featherface.evaluate.runtime`);
- ``<stem>_nms.onnx``: the same with decoding and NMS inside
  (:mod:`featherface.export.graph_postprocess`: outputs ``boxes [N, 4]``, ``scores [N]``,
  ``landmarks [N, 10]``, ``batch_index [N]``);
- ``<stem>.ts``: TorchScript (:mod:`featherface.export.torchscript`);
- both ONNX files carry :func:`~featherface.export.onnx_export.export_metadata`;

``latency.json`` the CPU latency of the raw graphs (:mod:`featherface.export.latency`), and
``parity.json`` holds the margins (``atol``, ``box_atol_px``, ``float64_factor``, ``rtol``) and the
checks of :mod:`featherface.export.parity` per model and image set:
``synthetic_val`` (or whatever ``prepare`` read): the first ``parity_images`` validation images
of ``stages/prepare``, read as evaluate reads them, each at its own size; ``widerface_val4``: the
real WIDER FACE images of ``<reference>/widerface/val4/images`` (``reference`` is
``$FEATHERFACE_REFERENCE`` or ``../shared/reference`` beside the repository), recorded as
skipped, with the reason, when that folder is absent.

Everything is built in a staging folder and swapped in only when every check passed. A failed
check raises :class:`~featherface.export.parity.ParityError` naming the failing checks and
removes the output folder, so that evaluate never scores an export that failed, nor one left
over from earlier weights.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from featherface.data.prepare import load_prepared
from featherface.data.transforms import to_network_input
from featherface.detection.priors import PriorConfig
from featherface.errors import FeatherFaceError
from featherface.evaluate.inference import read_rgb
from featherface.evaluate.runtime import OnnxRunner, TorchRunner
from featherface.export.graph_postprocess import append_postprocess
from featherface.export.latency import measure_latency
from featherface.export.onnx_export import export_metadata, raw_graph, save_onnx
from featherface.export.parity import (
    ExportRunners,
    NmsRunner,
    ParityError,
    Tolerances,
    check_images,
    failures,
)
from featherface.export.torchscript import export_torchscript, load_torchscript
from featherface.models.checkpoint import checkpoint_arch, load_checkpoint
from featherface.models.complexity import params_total
from featherface.params import ExportParams
from featherface.tracking import repo_root
from featherface.utils.atomic import staged_dir, write_json

REFERENCE_IMAGES = Path("widerface") / "val4" / "images"
PRIORS = PriorConfig()  # the anchors every model of the pipeline is trained and evaluated with
Log = Callable[[str], None]


def reference_root() -> Path:
    """``$FEATHERFACE_REFERENCE``, else ``../shared/reference`` beside the repository root."""
    if os.environ.get("FEATHERFACE_REFERENCE"):
        return Path(os.environ["FEATHERFACE_REFERENCE"])
    return repo_root().parent / "shared" / "reference"


def image_sets(prepare_dir: Path, count: int, reference: Path) -> dict[str, list[Path] | str]:
    """``{name: image files}``, or ``{name: reason}`` for a set that is skipped: the first
    ``count`` validation images of ``prepare``'s tables (``<source>_val``) and the real WIDER
    FACE images under ``reference`` (``widerface_val4``)."""
    prepared = load_prepared(prepare_dir)
    val = prepared.images[prepared.images["split"] == "val"].head(count)
    if val.empty:
        raise FeatherFaceError(f"{prepare_dir}: no validation images to check parity on")
    real = sorted((reference / REFERENCE_IMAGES).glob("*/*.jpg"))
    return {
        f"{prepared.source}_val": [prepared.image_path(row) for _, row in val.iterrows()],
        "widerface_val4": real or f"no images in {reference / REFERENCE_IMAGES}",
    }


def export_files(
    path: Path, arch: str, folder: Path, stem: str, params: ExportParams
) -> ExportRunners:
    """Write the three files of checkpoint ``path`` (of model ``arch``) as ``folder/<stem>*``;
    runners that read the files back, and the PyTorch network itself."""
    model = load_checkpoint(path).eval()
    settings = params.postprocess()
    metadata = export_metadata(arch, params_total(model), PRIORS, settings)
    raw = raw_graph(model, params.opset, params.trace_size, params.deform_conv)
    save_onnx(append_postprocess(raw, PRIORS, settings), folder / f"{stem}_nms.onnx", metadata)
    save_onnx(raw, folder / f"{stem}.onnx", metadata)
    export_torchscript(model, folder / f"{stem}.ts", params.trace_size)
    return ExportRunners(
        torch=TorchRunner(model),
        onnx=OnnxRunner(folder / f"{stem}.onnx"),
        torchscript=TorchRunner(load_torchscript(folder / f"{stem}.ts")),
        nms=NmsRunner(folder / f"{stem}_nms.onnx"),
    )


def _network_inputs(files: list[Path]) -> list[Tensor]:
    return [to_network_input(read_rgb(path)) for path in files]


def _model_report(
    path: Path,
    arch: str,
    runners: ExportRunners,
    inputs: Mapping[str, list[Tensor] | str],
    params: ExportParams,
    tolerances: Tolerances,
) -> dict[str, Any]:
    """Checkpoint, architecture, size and checks of one exported model."""
    checks: dict[str, Any] = {}
    for name, images in inputs.items():
        checks[name] = (
            {"skipped": images}
            if isinstance(images, str)
            else check_images(runners, images, tolerances, params.postprocess(), PRIORS)
        )
    return {
        "checkpoint": str(path),
        "arch": arch,
        "params_total": params_total(runners.torch.model),
        "checks": checks,
    }


def export_checkpoints(
    params: ExportParams,
    checkpoints: Mapping[str, Path],
    prepare_dir: Path,
    out_dir: Path,
    reference: Path | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Export each ``{stem: checkpoint}`` into ``out_dir`` and check parity (module doc);
    returns the parity report written to ``parity.json``."""
    archs = {}
    for stem, path in checkpoints.items():
        if not path.is_file():
            raise FeatherFaceError(f"{path}: checkpoint of {stem!r} not found")
        archs[stem] = checkpoint_arch(path)  # every checkpoint readable before any work
    sets = image_sets(prepare_dir, params.parity_images, reference or reference_root())
    inputs = {name: v if isinstance(v, str) else _network_inputs(v) for name, v in sets.items()}
    tolerances = Tolerances(params.atol, params.box_atol_px)
    report: dict[str, Any] = tolerances._asdict()  # the margins the checks used (parity doc)
    try:
        with staged_dir(out_dir) as staging:
            models = {}
            for stem, path in checkpoints.items():
                if log:
                    log(f"exporting {path} as {stem}.onnx, {stem}_nms.onnx, {stem}.ts")
                arch = archs[stem]
                runners = export_files(path, arch, staging, stem, params)
                models[stem] = _model_report(path, arch, runners, inputs, params, tolerances)
            failed = failures(models)
            report.update(passed=not failed, models=models)
            if failed:
                raise ParityError("parity failed: " + "; ".join(failed))
            write_json(staging / "parity.json", report)
            if log and params.latency_runs:
                log(f"timing the ONNX graphs: {params.latency_runs} rounds, 640 px, 1 thread")
            write_json(staging / "latency.json", stage_latency(params, staging, checkpoints, sets))
    except ParityError:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return report


def stage_latency(
    params: ExportParams,
    folder: Path,
    checkpoints: Mapping[str, Path],
    sets: Mapping[str, list[Path] | str],
) -> dict[str, Any]:
    """``latency.json``: :func:`~featherface.export.latency.measure_latency` of every raw graph
    in ``folder``, on the first parity image, or a record that it was skipped."""
    if params.latency_runs == 0:
        return {"skipped": "export.latency_runs is 0"}
    first = next(iter(sets.values()))
    image = first[0] if isinstance(first, list) else None
    files = {stem: folder / f"{stem}.onnx" for stem in checkpoints}
    return measure_latency(files, params.latency_runs, image)
