"""ONNX files of a detector: the raw-output graph, the graph with post-processing, metadata.

- :func:`raw_graph`: the network traced by PyTorch's TorchScript-based exporter
  (``torch.onnx.export(..., dynamo=False)``) with the contract of
  :mod:`featherface.evaluate.runtime`: input ``images float32[B, 3, H, W]`` (BGR minus the mean
  (104, 117, 123)), outputs ``loc [B, A, 4]``, ``conf [B, A, 2]`` logits and ``landm [B, A, 10]``;
  ``B``, ``H``, ``W`` (and so ``A``) are dynamic axes. FeatherFace V1's deformable convolutions
  export as the ONNX ``DeformConv`` operator (opset 19; ``deform_conv="native"``, see
  :func:`native_deform_convs`), or through the gather form of
  :func:`featherface.models.deform.weighted_gather_sum` (``deform_conv="gather"``, any opset, for
  runtimes without ``DeformConv``; ONNX Runtime ran V1's network at 640 px 1.8 times slower
  this way in one ``featherface bench`` comparison).
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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

import onnx
import torch
from torch import nn

from featherface.data.transforms import MEAN_BGR
from featherface.detection.priors import PriorConfig
from featherface.errors import FeatherFaceError
from featherface.evaluate.runtime import ONNX_INPUT, ONNX_OUTPUTS
from featherface.models.deform import ModulatedDeformConv2d
from featherface.params import PostprocessSettings

METADATA_PREFIX = "featherface."
DEFORM_CONV_OPSET = 19  # ONNX DeformConv first appears in opset 19
DeformConvExport = Literal["native", "gather"]

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


def _deform_conv_symbolic(
    g: Any, x: Any, weight: Any, offset: Any, mask: Any, bias: Any, *options: Any
) -> Any:
    """``torchvision::deform_conv2d`` as ONNX ``DeformConv``. torchvision's arguments after
    ``bias`` are stride (h, w), padding (h, w), dilation (h, w), weight groups, offset groups and
    ``use_mask``; both lay out the offsets ``[B, 2 * G * kh * kw, Ho, Wo]`` as (dy, dx) pairs, and
    ONNX takes ``X, W, offset, B, mask`` in that order."""
    from torch.onnx.symbolic_helper import _get_const

    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups, use_mask = (
        _get_const(value, "i", "deform_conv2d option") for value in options
    )
    inputs = (x, weight, offset, bias, mask) if use_mask else (x, weight, offset, bias)
    return g.op(
        "DeformConv",
        *inputs,
        dilations_i=[dil_h, dil_w],
        group_i=groups,
        kernel_shape_i=list(weight.type().sizes()[2:]),
        offset_group_i=offset_groups,
        pads_i=[pad_h, pad_w, pad_h, pad_w],
        strides_i=[stride_h, stride_w],
    )


@contextmanager
def native_deform_convs(model: nn.Module) -> Iterator[None]:
    """Inside the block, every :class:`ModulatedDeformConv2d` of ``model`` runs
    ``torchvision.ops.deform_conv2d`` (same weights, same maths) and the exporter writes that
    operator as ONNX ``DeformConv`` (:func:`_deform_conv_symbolic`); restored on exit."""
    layers = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    before = [layer.implementation for layer in layers]
    torch.onnx.register_custom_op_symbolic(
        "torchvision::deform_conv2d", _deform_conv_symbolic, DEFORM_CONV_OPSET
    )
    try:
        for layer in layers:
            layer.implementation = "torchvision"
        yield
    finally:
        for layer, implementation in zip(layers, before, strict=True):
            layer.implementation = implementation
        torch.onnx.unregister_custom_op_symbolic("torchvision::deform_conv2d", DEFORM_CONV_OPSET)


def raw_graph(
    model: nn.Module,
    opset: int = 19,
    trace_size: int = 320,
    deform_conv: DeformConvExport = "native",
) -> onnx.ModelProto:
    """Export ``model`` (put in eval mode) traced on a ``1 x 3 x trace_size x trace_size`` input;
    see the module doc for names, axes and ``deform_conv``."""
    native = deform_conv == "native" and any(
        isinstance(m, ModulatedDeformConv2d) for m in model.modules()
    )
    if native and opset < DEFORM_CONV_OPSET:
        raise FeatherFaceError(
            f"ONNX DeformConv needs opset {DEFORM_CONV_OPSET} or more, got {opset} "
            "(raise export.opset or set export.deform_conv: gather)"
        )
    model.eval()
    example = torch.zeros(1, 3, trace_size, trace_size)
    per_prior = {0: "batch", 1: "priors"}
    axes = {ONNX_INPUT: {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: per_prior for name in ONNX_OUTPUTS})
    buffer = io.BytesIO()
    with ExitStack() as stack:
        stack.enter_context(quiet_export())
        stack.enter_context(torch.no_grad())
        if native:
            stack.enter_context(native_deform_convs(model))
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
    arch: str, params_total: int, config: PriorConfig, settings: PostprocessSettings
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
    return graph_metadata(onnx.load(str(path), load_external_data=False))


def graph_metadata(model: onnx.ModelProto) -> dict[str, object]:
    """The ``featherface.*`` metadata of a loaded ONNX model, prefix removed, values decoded."""
    return {
        entry.key.removeprefix(METADATA_PREFIX): json.loads(entry.value)
        for entry in model.metadata_props
        if entry.key.startswith(METADATA_PREFIX)
    }


def onnx_summary(path: str | Path) -> dict[str, Any]:
    """What ``featherface info`` shows of an ONNX file: ``graph_weights`` (elements of the stored
    initializers, BatchNorm folded in), ``opset``, the graph's ``inputs`` and ``outputs`` and
    the ``featherface.*`` metadata of :func:`export_metadata` (``arch``, the source checkpoint's
    true ``params_total``, ...) when the file has it."""
    import numpy as np
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for a file that is no graph
        raise FeatherFaceError(f"{path}: not a readable ONNX file ({error})") from None
    graph = model.graph
    weights = sum(int(np.prod(numpy_helper.to_array(t).shape)) for t in graph.initializer)
    return {
        "file": str(path),
        "graph_weights": weights,
        "opset": max((entry.version for entry in model.opset_import), default=0),
        "inputs": [value.name for value in graph.input],
        "outputs": [value.name for value in graph.output],
        "metadata": graph_metadata(model),
    }
