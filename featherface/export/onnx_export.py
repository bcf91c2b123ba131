"""ONNX files of a detector: the raw-output graph, the graph with post-processing, metadata.

- :func:`raw_graph`: the network traced by PyTorch's TorchScript-based exporter
  (``torch.onnx.export(..., dynamo=False)``) with the contract of
  :mod:`featherface.evaluate.runtime`: input ``images float32[B, 3, H, W]`` (BGR minus the mean
  (104, 117, 123)), outputs ``loc [B, A, 4]``, ``conf [B, A, 2]`` logits and ``landm [B, A, 10]``;
  ``B``, ``H``, ``W`` (and so ``A``) are dynamic axes. FeatherFace V1's deformable convolutions
  export through the gather form of :func:`featherface.models.deform.weighted_gather_sum`.
- the same graph followed by decoding and NMS is
  :func:`featherface.export.graph_postprocess.append_postprocess` of it (outputs ``boxes``,
  ``scores``, ``landmarks``, ``batch_index``).
- :func:`export_metadata`: ``metadata_props`` entries (JSON strings under ``featherface.*``) that
  describe the anchors, the input, the variances, the post-processing thresholds, the
  architecture and its true parameter count, so a deployment needs no other file.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from torch import nn

from featherface.data.transforms import MEAN_BGR
from featherface.detection.priors import PriorConfig
from featherface.evaluate.runtime import ONNX_INPUT, ONNX_OUTPUTS
from featherface.export.graph_postprocess import NmsSettings

METADATA_PREFIX = "featherface."

# Warnings printed on every export of these models: the deprecation notices of the
# TorchScript-based ONNX exporter and of torch.jit, and shape arithmetic recorded by the tracer.
_EXPORT_WARNINGS = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
    r"`torch\.jit\.\w+` is deprecated",
    "Converting a tensor to a Python",
    "Constant folding - Only steps=1",
)


@contextmanager
def quiet_export() -> Iterator[None]:
    """Hide :data:`_EXPORT_WARNINGS` and tracer warnings inside the block (the parity checks,
    not these warnings, tell whether an export is right)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        for message in _EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


def raw_graph(model: nn.Module, opset: int = 17, trace_size: int = 320) -> onnx.ModelProto:
    """Export ``model`` (put in eval mode) traced on a ``1 x 3 x trace_size x trace_size`` input;
    see the module doc for names and axes."""
    model.eval()
    example = torch.zeros(1, 3, trace_size, trace_size)
    per_prior = {0: "batch", 1: "priors"}
    axes = {ONNX_INPUT: {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: per_prior for name in ONNX_OUTPUTS})
    buffer = io.BytesIO()
    with quiet_export(), torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            buffer,
            opset_version=opset,
            input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=axes,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def export_metadata(
    arch: str, params_total: int, config: PriorConfig, settings: NmsSettings
) -> dict[str, str]:
    """``metadata_props`` of an exported detector (values are JSON)."""
    values = {
        "arch": arch,
        "params_total": params_total,
        "input": f"{ONNX_INPUT} float32[B, 3, H, W]: BGR pixels minus input_mean_bgr, not scaled",
        "input_mean_bgr": list(MEAN_BGR),
        "min_sizes": [list(sizes) for sizes in config.min_sizes],
        "steps": list(config.steps),
        "clip": config.clip,
        "variances": list(config.variances),
        "score_threshold": settings.score_threshold,
        "nms_iou": settings.nms_iou,
        "top_k": settings.top_k,
        "keep_k": settings.keep_k,
    }
    return {METADATA_PREFIX + key: json.dumps(value) for key, value in values.items()}


def save_onnx(model: onnx.ModelProto, path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write ``model`` to ``path`` with ``metadata`` as its ``metadata_props`` (the stage writes
    into a staging folder, so a half-written file is never where evaluate reads)."""
    onnx.helper.set_model_props(model, dict(metadata))
    Path(path).write_bytes(model.SerializeToString())


def read_metadata(path: str | Path) -> dict[str, object]:
    """The ``featherface.*`` metadata of an ONNX file, prefix removed, values decoded."""
    model = onnx.load(str(path), load_external_data=False)
    return {
        entry.key.removeprefix(METADATA_PREFIX): json.loads(entry.value)
        for entry in model.metadata_props
        if entry.key.startswith(METADATA_PREFIX)
    }
