"""Modulated deformable convolution (DCNv2: Zhu et al., "Deformable ConvNets v2: More Deformable,
Better Results", CVPR 2019), the 3x3 convolution of FeatherFace V1's SSH context modules.

For output cell ``p0 = (u, v)`` and kernel tap ``k = i * kw + j`` the layer reads the input at a
learnt fractional position and scales the value by a learnt modulator ``m``::

    y[o, p0] = bias[o] + sum_{c,k} weight[o, c, i, j] * m_k(p0) * X_c(p_k)
    p_k = (u * stride - pad + i + dy_k(p0),  v * stride - pad + j + dx_k(p0))

``X_c`` is bilinear interpolation of channel ``c`` with zeros outside the image. Offsets come as
``Tensor[B, 2K, Ho, Wo]`` (``K = kh * kw``) with ``(dy, dx)`` of tap ``k`` in channels ``2k, 2k+1``,
modulators as ``Tensor[B, K, Ho, Wo]``: the layout of ``torchvision.ops.deform_conv2d``.

The ``sampling`` implementation computes the same sum from standard operators. Bilinear
interpolation is a weighted sum of four pixels, and the modulator folds into those four weights, so
the convolution is one matrix product plus one weighted gather-sum (``embedding_bag`` with
per-sample weights). As interpolation is linear, the product can come first (project every pixel to
``K * out`` values, then gather ``out``-wide rows, ``4K`` per output cell) or last (gather ``in``-wide
rows, 4 per tap, then project); :func:`prefer_project_first` picks the cheaper order.

Boundary and gradient rules follow torchvision's CPU kernel exactly: the four corners are
``floor(y), floor(y) + 1`` by ``floor(x), floor(x) + 1``, and a corner outside the image has value
zero. The fractional weights carry the offset gradient, so samples that sit exactly on the pixel grid
(every sample of a zero-initialised layer, including those on the row and column just outside the
image) get torchvision's one-sided gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

Implementation = Literal["sampling", "torchvision"]

_PAD = 2  # zero pixels around the gathered image: every clamped sample's corners fall inside


def prefer_project_first(in_channels: int, out_channels: int, stride: int) -> bool:
    """Whether projecting before sampling is the cheaper order.

    Per tap and output cell, project-first spends ``in * out * stride**2`` multiply-adds (it
    projects every input pixel) and gathers ``4 * out`` values; sample-first gathers ``4 * in``
    values and spends ``in * out`` multiply-adds. At stride 1 the products cost the same and the
    narrower gather wins; with a stride the extra projections dominate. Rule: ``out * stride**2
    <= in``.
    """
    return out_channels * stride * stride <= in_channels


def _bag_rows_and_weights(
    offset: Tensor,
    mask: Tensor,
    kernel_size: tuple[int, int],
    size: tuple[int, int],
    stride: int,
    padding: int,
    row_steps: tuple[int, int],
    origin: Tensor,
) -> tuple[Tensor, Tensor]:
    """Table row and weight of the four corners of every sample, ``Tensor[B, Ho, Wo, 4, K]``.

    offset: ``Tensor[B, 2K, Ho, Wo]``; mask: ``Tensor[B, K, Ho, Wo]``. The table holds the image
    padded with ``_PAD`` zero pixels on every side; pixel ``(r, c)`` of image ``b``, tap ``k`` is row
    ``origin[b, k] + r * row_steps[0] + c * row_steps[1]`` (origin broadcastable to
    ``Tensor[B, 1, 1, K]``, pixel ``(0, 0)``). A sample point ``(y, x)`` is clamped to
    ``[-2, H] x [-2, W]``; corners run top-left, top-right, bottom-left, bottom-right with weights
    ``m_k * [(1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx]``, ``fy = y - floor(y)``.
    """
    batch, _, out_h, out_w = offset.shape
    (kh, kw), (height, width) = kernel_size, size
    deltas = offset.reshape(batch, kh * kw, 2, out_h, out_w).permute(0, 3, 4, 2, 1).contiguous()
    mask = mask.permute(0, 2, 3, 1).contiguous()
    tap = torch.arange(kh * kw, device=offset.device)
    cell_y = torch.arange(out_h, dtype=offset.dtype, device=offset.device) * stride - padding
    cell_x = torch.arange(out_w, dtype=offset.dtype, device=offset.device) * stride - padding
    y = deltas[..., 0, :] + (cell_y[:, None, None] + (tap // kw).to(offset.dtype))
    x = deltas[..., 1, :] + (cell_x[:, None] + (tap % kw).to(offset.dtype))
    y, x = y.clamp(-_PAD, height), x.clamp(-_PAD, width)
    y0, x0 = y.floor(), x.floor()
    top_left = y0.long() * row_steps[0] + x0.long() * row_steps[1] + origin
    corner_row = torch.tensor([0, 0, 1, 1], device=offset.device).view(4, 1)
    corner_col = torch.tensor([0, 1, 0, 1], device=offset.device).view(4, 1)
    rows = top_left.unsqueeze(-2) + (corner_row * row_steps[0] + corner_col * row_steps[1])
    frac_y, frac_x = y - y0, x - x0
    bottom = mask * frac_y
    weight_y = torch.stack((mask - bottom, bottom), dim=-2)
    weight_x = torch.stack((1 - frac_x, frac_x), dim=-2)
    return rows, (weight_y.unsqueeze(-2) * weight_x.unsqueeze(-3)).flatten(-3, -2)


def weighted_gather_sum(table: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``out[n] = sum_j weight[n, j] * table[index[n, j]]``, ``Tensor[N, D]``.

    table: ``Tensor[R, D]``; index: ``Tensor[N, J]`` int64; weight: ``Tensor[N, J]``. Eager mode
    runs ``embedding_bag`` (a fused gather and weighted sum); ONNX export writes the gather,
    multiply and sum out, as ``embedding_bag`` with per-sample weights has no compact ONNX form.
    """
    if torch.onnx.is_in_onnx_export():
        rows = table.index_select(0, index.reshape(-1))
        return (rows.view(index.shape[0], index.shape[1], -1) * weight.unsqueeze(-1)).sum(dim=1)
    return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")


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
        offset, mask, (kh, kw), (height, width), stride, padding, steps, origin
    )
    projection = weight.permute(2, 3, 0, 1).reshape(taps * out_channels, channels)
    table = torch.matmul(padded.view(batch, channels, pixels).transpose(1, 2), projection.t())
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
        offset, mask, (kh, kw), (height, width), stride, padding, steps, image.view(-1, 1, 1, 1)
    )
    samples = weighted_gather_sum(
        padded.reshape(-1, channels),
        rows.transpose(-1, -2).reshape(-1, 4),
        corner_weight.transpose(-1, -2).reshape(-1, 4),
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
    if not torch.jit.is_tracing():
        _check_shapes(x, offset, mask, weight, stride, padding)
    if project_first is None:
        project_first = prefer_project_first(x.shape[1], weight.shape[0], stride)
    order = _project_then_sample if project_first else _sample_then_project
    out = order(x, offset, mask, weight, stride, padding).permute(0, 3, 1, 2).contiguous()
    return out if bias is None else out + bias.view(-1, 1, 1)


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer with the submodule names of FeatherFace's ``DeformableConv2d``
    (``offset_conv``, ``modulator_conv``, ``regular_conv``), so its checkpoints load unchanged.

    ``offset = offset_conv(x)``: ``Tensor[B, 2K, Ho, Wo]``; ``mask = 2 * sigmoid(modulator_conv(x))``:
    ``Tensor[B, K, Ho, Wo]`` in ``(0, 2)``; then the deformable convolution with
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
