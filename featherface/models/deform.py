"""Modulated deformable convolution (DCNv2: Zhu et al., "Deformable ConvNets v2: More Deformable,
Better Results", CVPR 2019), the 3x3 convolution of FeatherFace V1's SSH context modules.

For output cell ``p0 = (u, v)`` and kernel tap ``k = i * kw + j`` the layer reads the input at a
learnt fractional position and scales the value by a learnt modulator ``m``::

    y[o, p0] = bias[o] + sum_{c,k} weight[o, c, i, j] * m_k(p0) * X_c(p_k)
    p_k = (u * stride - pad + i + dy_k(p0),  v * stride - pad + j + dx_k(p0))

``X_c`` is bilinear interpolation of channel ``c`` with zeros outside the image. Offsets come as
``Tensor[B, 2K, Ho, Wo]`` (``K = kh * kw``) with ``(dy, dx)`` of tap ``k`` in channels
``2k, 2k + 1``, modulators as ``Tensor[B, K, Ho, Wo]``: the layout of
``torchvision.ops.deform_conv2d``.

The ``sampling`` implementation computes the same sum from standard operators. Bilinear
interpolation is a weighted sum of four pixels and the modulator folds into those four weights, so
the convolution is one matrix product plus one weighted gather-sum (``embedding_bag`` with
per-sample weights). Interpolation is linear, so the product can come first (project every pixel
to ``K * out`` values, then gather ``4K`` rows of width ``out`` per output cell) or last (gather 4
rows of width ``in`` per tap, then project); :func:`prefer_project_first` picks the order.

Boundary and gradient rules are those of torchvision's kernel: the corners are ``floor(y)``,
``floor(y) + 1`` by ``floor(x)``, ``floor(x) + 1``, and a corner outside the image is zero. The
offset gradient flows through the fractional weights, so samples exactly on the pixel grid (every
sample of a zero-initialised layer, the ring just outside the image included) get torchvision's
one-sided gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

Implementation = Literal["sampling", "torchvision"]

_PAD = 2  # zero pixels around the gathered image: every clamped sample's corners fall inside

# Cost of gathering one value, in multiply-adds, for bags of 4K rows (project-first) and the extra
# factor for bags of 4 rows (sample-first); fitted to one-thread CPU timings of both orders.
_GATHER_COST = 4
_SMALL_BAG_FACTOR = 4


def prefer_project_first(in_channels: int, out_channels: int, stride: int) -> bool:
    """Whether projecting before sampling is the cheaper order.

    Per tap and output cell, project-first spends ``in * out * stride**2`` multiply-adds (it
    projects every input pixel) and gathers ``4 * out`` values; sample-first spends ``in * out``
    multiply-adds and gathers ``4 * in`` values in small bags:

        in * out * s**2 + 4 * G * out  <=  in * out + 4 * G * F * in,   G = 4, F = 4

    At stride 1 this is ``out <= 4 * in``.
    """
    project_first = in_channels * out_channels * stride * stride + 4 * _GATHER_COST * out_channels
    sample_first = in_channels * out_channels + 4 * _GATHER_COST * _SMALL_BAG_FACTOR * in_channels
    return project_first <= sample_first


def _bag_rows_and_weights(
    offset: Tensor,
    mask: Tensor,
    kernel_size: tuple[int, int],
    size: tuple[int, int],
    stride: int,
    padding: int,
    row_steps: tuple[int, int],
    origin: Tensor,
    corner_dim: int,
) -> tuple[Tensor, Tensor]:
    """Table row and weight of the four corners of every sample.

    offset: ``Tensor[B, 2K, Ho, Wo]``; mask: ``Tensor[B, K, Ho, Wo]``. The table holds the image
    padded with ``_PAD`` zero pixels on every side; pixel ``(r, c)`` of image ``b`` for tap ``k``
    is row ``origin[b, k] + r * row_steps[0] + c * row_steps[1]`` (origin broadcastable to
    ``Tensor[B, 1, 1, K]``, the row of pixel ``(0, 0)``). A sample point ``(y, x)`` is clamped to
    ``[-2, H] x [-2, W]``, which keeps its corners in the padded table and changes nothing else:
    beyond the clamp all four corners are zero, as are the value and its gradient in torchvision.
    Corners run top-left, top-right, bottom-left, bottom-right with weights
    ``m_k * [(1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx]``, ``fy = y - floor(y)``.

    Returns rows (int64) and weights, ``Tensor[B, Ho, Wo, 4, K]`` for ``corner_dim=-2`` or
    ``Tensor[B, Ho, Wo, K, 4]`` for ``corner_dim=-1``.
    """
    batch, _, out_h, out_w = offset.shape
    (kh, kw), (height, width) = kernel_size, size
    deltas = offset.reshape(batch, kh, kw, 2, out_h, out_w).permute(0, 4, 5, 3, 1, 2).contiguous()
    mask = mask.permute(0, 2, 3, 1).contiguous()
    options = {"dtype": offset.dtype, "device": offset.device}
    start_y = torch.arange(-padding, out_h * stride - padding, stride, **options)
    start_x = torch.arange(-padding, out_w * stride - padding, stride, **options)
    y = deltas[..., 0, :, :] + (start_y[:, None] + torch.arange(kh, **options))[:, None, :, None]
    x = deltas[..., 1, :, :] + (start_x[:, None] + torch.arange(kw, **options))[:, None, :]
    y = y.clamp(-_PAD, height).flatten(-2)
    x = x.clamp(-_PAD, width).flatten(-2)
    y0, x0 = y.floor(), x.floor()
    top_left = y0.long() * row_steps[0] + x0.long() * row_steps[1] + origin
    down, right = row_steps
    rows = (top_left, top_left + right, top_left + down, top_left + (down + right))
    bottom = mask * (y - y0)
    top = mask - bottom
    frac_x = x - x0
    top_right, bottom_right = top * frac_x, bottom * frac_x
    weights = (top - top_right, top_right, bottom - bottom_right, bottom_right)
    return torch.stack(rows, dim=corner_dim), torch.stack(weights, dim=corner_dim)


def weighted_gather_sum(table: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``out[n] = sum_j weight[n, j] * table[index[n, j]]``, ``Tensor[N, D]``.

    table: ``Tensor[R, D]``; index: ``Tensor[N, J]`` int64; weight: ``Tensor[N, J]``. Eager mode
    runs ``embedding_bag`` (a fused gather and weighted sum); ONNX export writes the gather,
    multiply and sum out, as ``embedding_bag`` with per-sample weights has no compact ONNX form.
    """
    if torch.onnx.is_in_onnx_export():
        rows = table.index_select(0, index.reshape(-1))
        return (rows.view(index.shape[0], index.shape[1], -1) * weight.unsqueeze(-1)).sum(dim=1)
    if torch.is_grad_enabled() and (table.requires_grad or weight.requires_grad):
        return _WeightedGatherSum.apply(table, index, weight)
    return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")


class _WeightedGatherSum(torch.autograd.Function):
    """:func:`weighted_gather_sum` with a faster backward on CPU than ``embedding_bag``'s.

    The table gradient is the transposed sum ``dT[r] = sum_{(n, j): index[n, j] = r}
    weight[n, j] * dout[n]``: after a sort of the flat indices, it is itself an ``embedding_bag``
    forward with one bag per table row (empty bags give zero rows), which avoids the slower
    dense ``embedding_bag`` backward. The weight gradient is ``dW[n, j] = T[index[n, j]] . dout[n]``
    (``aten._embedding_bag_per_sample_weights_backward``).
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        bags, width = index.shape
        flat = index.reshape(-1)
        offsets = torch.arange(0, bags * width, width, device=index.device)
        out, offset2bag, _, _ = torch.ops.aten._embedding_bag(
            table, flat, offsets, False, 0, False, weight.reshape(-1), False, -1
        )
        ctx.save_for_backward(table, flat, offsets, offset2bag, weight)
        ctx.width = width
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, Tensor | None]:  # type: ignore[override]
        table, flat, offsets, offset2bag, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_table = grad_weight = None
        if ctx.needs_input_grad[0]:
            keys = flat.int() if table.shape[0] < 2**31 else flat  # int32 sorts about 2x faster
            order = torch.argsort(keys)
            counts = torch.bincount(flat, minlength=table.shape[0])
            starts = torch.cumsum(counts, 0) - counts
            grad_table = F.embedding_bag(
                torch.div(order, ctx.width, rounding_mode="floor"),
                grad_out,
                starts,
                per_sample_weights=weight.reshape(-1)[order].to(grad_out.dtype),
                mode="sum",
            ).to(table.dtype)
        if ctx.needs_input_grad[2]:
            grad_weight = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                grad_out, table, flat, offsets, offset2bag, 0, -1
            ).view_as(weight)
        return grad_table, None, grad_weight


def _project_then_sample(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, stride: int, padding: int
) -> Tensor:
    """``Z[b, pixel, k] = weight[:, :, k] @ x[b, :, pixel]`` on the padded image, then every
    output cell sums its ``4K`` weighted rows ``Z[b, corner, k]``. Arguments as in
    :func:`modulated_deform_conv2d`; returns ``Tensor[B, Ho, Wo, O]``.
    """
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    padded = F.pad(x, (_PAD, _PAD, _PAD, _PAD))
    pixels = (height + 2 * _PAD) * (width + 2 * _PAD)
    steps = ((width + 2 * _PAD) * taps, taps)
    image = torch.arange(batch, device=x.device) * (pixels * taps) + _PAD * (steps[0] + steps[1])
    origin = image.view(batch, 1, 1, 1) + torch.arange(taps, device=x.device)
    rows, corner_weight = _bag_rows_and_weights(
        offset, mask, (kh, kw), (height, width), stride, padding, steps, origin, corner_dim=-2
    )
    projection = weight.permute(2, 3, 0, 1).reshape(taps * out_channels, channels)
    table = torch.matmul(padded.reshape(batch, channels, pixels).transpose(1, 2), projection.t())
    out = weighted_gather_sum(
        table.view(-1, out_channels),
        rows.flatten(0, 2).flatten(1),
        corner_weight.flatten(0, 2).flatten(1),
    )
    return out.view(batch, rows.shape[1], rows.shape[2], out_channels)


def _sample_then_project(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, stride: int, padding: int
) -> Tensor:
    """``S[b, p0, k] = sum_corner w * x[b, :, corner]`` (4 rows per tap) on the padded image,
    then ``out[b, p0] = weight.view(O, K * C) @ S[b, p0]``. Arguments as in
    :func:`modulated_deform_conv2d`; returns ``Tensor[B, Ho, Wo, O]``.
    """
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    padded = F.pad(x, (_PAD, _PAD, _PAD, _PAD)).permute(0, 2, 3, 1)
    pixels = (height + 2 * _PAD) * (width + 2 * _PAD)
    steps = (width + 2 * _PAD, 1)
    image = torch.arange(batch, device=x.device) * pixels + _PAD * (steps[0] + steps[1])
    rows, corner_weight = _bag_rows_and_weights(
        offset,
        mask,
        (kh, kw),
        (height, width),
        stride,
        padding,
        steps,
        image.view(-1, 1, 1, 1),
        corner_dim=-1,
    )
    samples = weighted_gather_sum(
        padded.reshape(-1, channels),
        rows.view(-1, 4),
        corner_weight.view(-1, 4),
    )
    projection = weight.permute(0, 2, 3, 1).reshape(out_channels, taps * channels)
    out = torch.matmul(samples.view(-1, taps * channels), projection.t())
    return out.view(batch, rows.shape[1], rows.shape[2], out_channels)


def _check_shapes(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, stride: int, padding: int
) -> None:
    """Raise ``ValueError`` unless offset and mask fit the input, kernel, stride and padding."""
    batch, _, height, width = x.shape
    _, _, kh, kw = weight.shape
    out_size = ((height + 2 * padding - kh) // stride + 1, (width + 2 * padding - kw) // stride + 1)
    expected = {"offset": (batch, 2 * kh * kw, *out_size), "mask": (batch, kh * kw, *out_size)}
    for name, tensor in (("offset", offset), ("mask", mask)):
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {expected[name]}")


def modulated_deform_conv2d(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 1,
    project_first: bool | None = None,
) -> Tensor:
    """Modulated deformable convolution from standard operators; equals
    ``torchvision.ops.deform_conv2d(x, offset, weight, bias, stride, padding, mask=mask)``.

    x: ``Tensor[B, C, H, W]``; offset: ``Tensor[B, 2K, Ho, Wo]`` with ``(dy, dx)`` of tap ``k`` in
    channels ``2k, 2k + 1``; mask: ``Tensor[B, K, Ho, Wo]``; weight: ``Tensor[O, C, kh, kw]``,
    ``K = kh * kw``; bias: ``Tensor[O]`` or None; ``Ho = (H + 2 * padding - kh) // stride + 1``
    (likewise ``Wo``). Dilation 1, one offset group. ``project_first`` picks the order (None:
    :func:`prefer_project_first`). Returns ``Tensor[B, O, Ho, Wo]``, contiguous.
    """
    if not torch.jit.is_tracing():  # checks on traced sizes would freeze them into an export
        _check_shapes(x, offset, mask, weight, stride, padding)
    if project_first is None:
        project_first = prefer_project_first(x.shape[1], weight.shape[0], stride)
    order = _project_then_sample if project_first else _sample_then_project
    out = order(x, offset, mask, weight, stride, padding).permute(0, 3, 1, 2).contiguous()
    return out if bias is None else out + bias.view(-1, 1, 1)


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer with the submodule names of FeatherFace's ``DeformableConv2d``
    (``offset_conv``, ``modulator_conv``, ``regular_conv``), so its checkpoints load unchanged.

    ``offset = offset_conv(x)``: ``Tensor[B, 2K, Ho, Wo]``;
    ``mask = 2 * sigmoid(modulator_conv(x))``: ``Tensor[B, K, Ho, Wo]`` in ``(0, 2)``; then the
    deformable convolution with
    ``regular_conv.weight`` and ``regular_conv.bias`` (dilation 1). The offset and modulator
    convolutions start at zero, so a fresh layer equals ``regular_conv`` (``2 * sigmoid(0) = 1``).

    ``implementation="torchvision"`` calls ``torchvision.ops.deform_conv2d`` (the original code);
    ``"sampling"`` calls :func:`modulated_deform_conv2d`, which is faster on CPU and exports to
    ONNX, and runs the offset and modulator convolutions as one convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
        implementation: Implementation = "sampling",
    ) -> None:
        super().__init__()
        if implementation not in ("sampling", "torchvision"):
            raise ValueError(
                f"implementation must be 'sampling' or 'torchvision': {implementation!r}"
            )
        self.stride = stride
        self.padding = padding
        self.implementation: Implementation = implementation
        self.project_first = prefer_project_first(in_channels, out_channels, stride)
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, stride, padding, bias=True)
        self.modulator_conv = nn.Conv2d(in_channels, taps, kernel_size, stride, padding, bias=True)
        self.regular_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=bias
        )
        for conv in (self.offset_conv, self.modulator_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``Tensor[B, in, H, W]`` -> ``Tensor[B, out, Ho, Wo]``."""
        if self.implementation == "torchvision":
            return torchvision.ops.deform_conv2d(
                x,
                self.offset_conv(x),
                self.regular_conv.weight,
                self.regular_conv.bias,
                stride=self.stride,
                padding=self.padding,
                mask=2.0 * torch.sigmoid(self.modulator_conv(x)),
            )
        both = F.conv2d(
            x,
            torch.cat((self.offset_conv.weight, self.modulator_conv.weight)),
            torch.cat((self.offset_conv.bias, self.modulator_conv.bias)),
            self.stride,
            self.padding,
        )
        offset, logits = both.split(
            (self.offset_conv.out_channels, self.modulator_conv.out_channels), dim=1
        )
        return modulated_deform_conv2d(
            x,
            offset,
            2.0 * torch.sigmoid(logits),
            self.regular_conv.weight,
            self.regular_conv.bias,
            self.stride,
            self.padding,
            self.project_first,
        )

    def extra_repr(self) -> str:
        return f"implementation={self.implementation!r}, project_first={self.project_first}"
