"""Detection post-processing as ONNX nodes: priors from the input size, decoding, NMS.

The nodes read four values of a detector graph (the contract of
:mod:`featherface.evaluate.runtime`): ``images float32[B, 3, H, W]`` (only its shape is used),
``loc float32[B, A, 4]``, ``conf float32[B, A, 2]`` logits and ``landm float32[B, A, 10]``. They
compute, per image, what :func:`featherface.detection.postprocess` computes in Python:

1. priors of an ``H x W`` input (:mod:`featherface.detection.priors`): per level of stride ``s``,
   ``ceil(H / s) x ceil(W / s)`` cells, ``cx = (j + 0.5) * s / W``, ``cy = (i + 0.5) * s / H``,
   ``w = m / W``, ``h = m / H``, computed in float64 and rounded once to float32;
2. boxes and landmarks decoded with the variances (:mod:`featherface.detection.codec`) and
   multiplied by ``(W, H)``; scores ``softmax(conf)[..., 1]``;
3. the ``top_k`` best scores (ONNX ``TopK``: ties keep the lower prior index first, as the stable
   sort in Python), then ``NonMaxSuppression`` on ``(x1, y1, x2 + 1, y2 + 1)`` (the +1 pixel
   IoU of the reference) with ``score > score_threshold``, IoU ``> nms_iou`` suppressed, and at
   most ``keep_k`` faces per image.

Outputs (:data:`NMS_OUTPUTS`), ``N`` faces over the whole batch, image by image, each image's by
descending score:

- ``boxes float32[N, 4]``: ``(x1, y1, x2, y2)`` in input pixels;
- ``scores float32[N]``: face probability;
- ``landmarks float32[N, 10]``: five ``(x, y)`` points in input pixels;
- ``batch_index int64[N]``: the image of each face in the batch.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.typing import DTypeLike
from onnx import TensorProto, helper, numpy_helper

from featherface.detection.priors import PriorConfig
from featherface.params import PostprocessSettings

NMS_OUTPUTS: tuple[str, str, str, str] = ("boxes", "scores", "landmarks", "batch_index")
RAW_INPUTS: tuple[str, str, str, str] = ("images", "loc", "conf", "landm")


class _Builder:
    """Collects nodes and constants; every value it creates gets a unique ``prefix``ed name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: object, dtype: DTypeLike = np.float32) -> str:
        """A constant tensor ``np.asarray(value, dtype)``; returns its name."""
        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ops(self, op_type: str, *inputs: str, outputs: int, **attributes: object) -> list[str]:
        """Append one node with ``outputs`` outputs; returns their names."""
        first = self._name(op_type.lower())
        names = [first] + [f"{first}_{index}" for index in range(1, outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attributes))
        return names

    def op(self, op_type: str, *inputs: str, **attributes: object) -> str:
        """Append one node with one output; returns its name."""
        return self.ops(op_type, *inputs, outputs=1, **attributes)[0]

    def cells(self, size: str, step: int) -> str:
        """``ceil(size / step)`` of an int64 scalar: ``(size + step - 1) / step``."""
        total = self.op("Add", size, self.const(step - 1, np.int64))
        return self.op("Div", total, self.const(step, np.int64))

    def centres(self, count: str, step: int, size: str) -> str:
        """``double[count]`` of ``(k + 0.5) * step / size``, ``k = 0 .. count - 1``."""
        index = self.op("Range", self.const(0, np.int64), count, self.const(1, np.int64))
        half = self.op(
            "Add", self.op("Cast", index, to=TensorProto.DOUBLE), self.const(0.5, np.float64)
        )
        return self.op("Div", self.op("Mul", half, self.const(float(step), np.float64)), size)


def _level_priors(
    b: _Builder, sizes: tuple[str, str, str, str], step: int, min_sizes: tuple[int, ...]
) -> str:
    """``double[rows * cols * M, 4]`` priors of one level; ``sizes`` = (H, W) as int64 scalars
    then as doubles."""
    height, width, height_f, width_f = sizes
    rows, cols = b.cells(height, step), b.cells(width, step)
    anchors = b.const([float(m) for m in min_sizes], np.float64)
    parts = (
        (b.centres(cols, step, width_f), [1, -1, 1]),
        (b.centres(rows, step, height_f), [-1, 1, 1]),
        (b.op("Div", anchors, width_f), [1, 1, -1]),
        (b.op("Div", anchors, height_f), [1, 1, -1]),
    )
    axis0 = b.const([0], np.int64)
    grid = b.op(
        "Concat",
        b.op("Unsqueeze", rows, axis0),
        b.op("Unsqueeze", cols, axis0),
        b.const([len(min_sizes)], np.int64),
        axis=0,
    )
    columns = [
        b.op("Unsqueeze", b.op("Expand", b.op("Reshape", part, b.const(shape, np.int64)), grid),
             b.const([-1], np.int64))
        for part, shape in parts
    ]  # fmt: skip
    return b.op("Reshape", b.op("Concat", *columns, axis=-1), b.const([-1, 4], np.int64))


def _priors(b: _Builder, images: str, config: PriorConfig) -> tuple[str, str]:
    """``float32[A, 4]`` priors of the input's ``H x W`` and the ``float32[2]`` scale ``(W, H)``."""
    shape = b.op("Shape", images)
    height = b.op("Gather", shape, b.const(2, np.int64))
    width = b.op("Gather", shape, b.const(3, np.int64))
    sizes = (
        height,
        width,
        b.op("Cast", height, to=TensorProto.DOUBLE),
        b.op("Cast", width, to=TensorProto.DOUBLE),
    )
    levels = [
        _level_priors(b, sizes, step, min_sizes)
        for step, min_sizes in zip(config.steps, config.min_sizes, strict=True)
    ]
    priors = b.op("Cast", b.op("Concat", *levels, axis=0), to=TensorProto.FLOAT)
    if config.clip:
        priors = b.op("Clip", priors, b.const(0.0), b.const(1.0))
    axis0 = b.const([0], np.int64)
    scale = b.op(
        "Concat", b.op("Unsqueeze", width, axis0), b.op("Unsqueeze", height, axis0), axis=0
    )
    return priors, b.op("Cast", scale, to=TensorProto.FLOAT)


def _slice(b: _Builder, value: str, start: int, end: int, axis: int) -> str:
    return b.op(
        "Slice",
        value,
        b.const([start], np.int64),
        b.const([end], np.int64),
        b.const([axis], np.int64),
    )


def _decode(
    b: _Builder, loc: str, landm: str, priors: str, scale: str, variances: tuple[float, float]
) -> tuple[str, str]:
    """``float32[B, A, 4]`` boxes and ``float32[B, A, 10]`` landmarks in input pixels::

    c = p_xy + t_xy * v0 * p_wh   s = p_wh * exp(t_wh * v1)   box = (c - s / 2, c + s / 2)
    point = p_xy + t * v0 * p_wh
    """
    centre, size = _slice(b, priors, 0, 2, 1), _slice(b, priors, 2, 4, 1)
    v0, v1 = b.const(variances[0]), b.const(variances[1])
    shift = b.op("Mul", b.op("Mul", _slice(b, loc, 0, 2, 2), v0), size)
    box_centre = b.op("Add", centre, shift)
    box_size = b.op("Mul", size, b.op("Exp", b.op("Mul", _slice(b, loc, 2, 4, 2), v1)))
    top_left = b.op("Sub", box_centre, b.op("Div", box_size, b.const(2.0)))
    corners = b.op("Concat", top_left, b.op("Add", box_size, top_left), axis=-1)
    boxes = b.op("Mul", corners, b.op("Tile", scale, b.const([2], np.int64)))
    axis1 = b.const([1], np.int64)
    points = b.op("Reshape", landm, b.const([0, 0, 5, 2], np.int64))
    offsets = b.op("Mul", b.op("Mul", points, v0), b.op("Unsqueeze", size, axis1))
    decoded = b.op("Add", b.op("Unsqueeze", centre, axis1), offsets)
    flat = b.op("Reshape", decoded, b.const([0, 0, 10], np.int64))
    return boxes, b.op("Mul", flat, b.op("Tile", scale, b.const([5], np.int64)))


def _take_rows(b: _Builder, values: str, index: str, width: int) -> str:
    """``values[b, index[b, k], :]`` of ``float32[B, A, width]`` for ``int64[B, K]`` indices."""
    expanded = b.op(
        "Expand", b.op("Unsqueeze", index, b.const([2], np.int64)), b.const([1, 1, width], np.int64)
    )
    return b.op("GatherElements", values, expanded, axis=1)


def _select(
    b: _Builder, boxes: str, scores: str, landmarks: str, settings: PostprocessSettings
) -> list[str]:
    """Top-k, NMS and keep-k (module doc); returns the values of :data:`NMS_OUTPUTS`."""
    anchors = b.op("Gather", b.op("Shape", scores), b.const([1], np.int64))
    k = b.op("Min", anchors, b.const([settings.top_k], np.int64))
    top_scores, top_index = b.ops("TopK", scores, k, outputs=2, axis=1, largest=1, sorted=1)
    top_boxes = _take_rows(b, boxes, top_index, 4)
    top_landmarks = _take_rows(b, landmarks, top_index, 10)
    selected = b.op(
        "NonMaxSuppression",
        b.op("Add", top_boxes, b.const([0.0, 0.0, 1.0, 1.0])),
        b.op("Unsqueeze", top_scores, b.const([1], np.int64)),
        b.const([settings.keep_k], np.int64),
        b.const([settings.nms_iou]),
        b.const([settings.score_threshold]),
    )
    pick = b.op("Gather", selected, b.const([0, 2], np.int64), axis=1)  # (image, candidate)
    return [
        b.op("GatherND", top_boxes, pick),
        b.op("GatherND", top_scores, pick),
        b.op("GatherND", top_landmarks, pick),
        b.op("Gather", selected, b.const(0, np.int64), axis=1),
    ]


def _postprocess_nodes(config: PriorConfig, settings: PostprocessSettings) -> _Builder:
    """The nodes from :data:`RAW_INPUTS` to :data:`NMS_OUTPUTS` (module doc)."""
    b = _Builder("postprocess/")
    images, loc, conf, landm = RAW_INPUTS
    priors, scale = _priors(b, images, config)
    boxes, landmarks = _decode(b, loc, landm, priors, scale, config.variances)
    scores = b.op("Gather", b.op("Softmax", conf, axis=-1), b.const(1, np.int64), axis=2)
    values = _select(b, boxes, scores, landmarks, settings)
    for value, name in zip(values, NMS_OUTPUTS, strict=True):
        b.nodes.append(helper.make_node("Identity", [value], [name]))
    return b


def _output_infos() -> list[onnx.ValueInfoProto]:
    shapes = {"boxes": ["faces", 4], "scores": ["faces"], "landmarks": ["faces", 10]}
    infos = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()]
    infos.append(helper.make_tensor_value_info("batch_index", TensorProto.INT64, ["faces"]))
    return infos


def append_postprocess(
    raw: onnx.ModelProto, config: PriorConfig, settings: PostprocessSettings
) -> onnx.ModelProto:
    """A copy of the raw detector graph ``raw`` whose outputs are :data:`NMS_OUTPUTS` instead
    of ``loc``, ``conf``, ``landm`` (which stay inside the graph)."""
    names = {value.name for value in raw.graph.input} | {value.name for value in raw.graph.output}
    missing = sorted(set(RAW_INPUTS) - names)
    if missing:
        raise ValueError(f"the detector graph has no {missing}")
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    b = _postprocess_nodes(config, settings)
    model.graph.node.extend(b.nodes)
    model.graph.initializer.extend(b.initializers)
    del model.graph.output[:]
    model.graph.output.extend(_output_infos())
    onnx.checker.check_model(model)
    return model


def postprocess_model(
    config: PriorConfig, settings: PostprocessSettings, opset: int
) -> onnx.ModelProto:
    """The post-processing alone: inputs :data:`RAW_INPUTS` (dynamic ``B``, ``H``, ``W``, ``A``),
    outputs :data:`NMS_OUTPUTS`; for checking it on hand-made raw outputs."""
    b = _postprocess_nodes(config, settings)
    inputs = [
        helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, "H", "W"]),
        helper.make_tensor_value_info("loc", TensorProto.FLOAT, ["B", "A", 4]),
        helper.make_tensor_value_info("conf", TensorProto.FLOAT, ["B", "A", 2]),
        helper.make_tensor_value_info("landm", TensorProto.FLOAT, ["B", "A", 10]),
    ]
    graph = helper.make_graph(b.nodes, "postprocess", inputs, _output_infos(), b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model
