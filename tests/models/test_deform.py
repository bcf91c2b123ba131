"""ModulatedDeformConv2d: the ``sampling`` implementation against torchvision's deform_conv2d
(values and gradients, in and outside the image), the zero-initialised state, parameter names,
and ONNX export parity."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision
from torch import Tensor

from featherface.models import deform
from featherface.models.deform import (
    ModulatedDeformConv2d,
    modulated_deform_conv2d,
    prefer_project_first,
    weighted_gather_sum,
)

# (batch, in, out, height, width, stride): square and non-square, odd sizes, stride 1 and 2
SHAPES = [
    (1, 8, 4, 12, 12, 1),
    (2, 6, 5, 7, 11, 1),
    (1, 5, 7, 9, 4, 2),
    (2, 8, 6, 13, 10, 2),
    (1, 3, 2, 1, 1, 1),
]


def _output_size(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1


def _random_case(
    batch: int, cin: int, cout: int, height: int, width: int, stride: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Input, offsets (a few pixels, a fifth of them far outside the image), modulators in (0, 2),
    weight scaled to unit-size outputs, bias."""
    gen = torch.Generator().manual_seed(batch * 1000 + cin * 100 + height * 10 + width + stride)
    out_h, out_w = _output_size(height, stride), _output_size(width, stride)
    x = torch.randn(batch, cin, height, width, generator=gen, dtype=dtype)
    offset = 2.5 * torch.randn(batch, 18, out_h, out_w, generator=gen, dtype=dtype)
    far = torch.rand(offset.shape, generator=gen) < 0.2
    offset = torch.where(far, offset.sign() * (max(height, width) + 3.0), offset)
    mask = 2 * torch.rand(batch, 9, out_h, out_w, generator=gen, dtype=dtype)
    weight = torch.randn(cout, cin, 3, 3, generator=gen, dtype=dtype) / (9 * cin) ** 0.5
    bias = torch.randn(cout, generator=gen, dtype=dtype)
    return x, offset, mask, weight, bias


def _random_layers(
    cin: int, cout: int, stride: int, bias: bool, seed: int = 0
) -> tuple[ModulatedDeformConv2d, ModulatedDeformConv2d]:
    """A torchvision and a sampling layer with the same non-zero offset and modulator weights."""
    torch.manual_seed(seed)
    reference = ModulatedDeformConv2d(
        cin, cout, stride=stride, bias=bias, implementation="torchvision"
    )
    for conv in (reference.offset_conv, reference.modulator_conv):
        torch.nn.init.normal_(conv.weight, std=0.6)
        torch.nn.init.normal_(conv.bias, std=0.6)
    sampling = ModulatedDeformConv2d(cin, cout, stride=stride, bias=bias)
    sampling.load_state_dict(reference.state_dict())
    return reference, sampling


def _max_rel_diff(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def test_parameter_names_and_zero_init() -> None:
    layer = ModulatedDeformConv2d(16, 8, bias=True)
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes == {
        "offset_conv.weight": (18, 16, 3, 3),
        "offset_conv.bias": (18,),
        "modulator_conv.weight": (9, 16, 3, 3),
        "modulator_conv.bias": (9,),
        "regular_conv.weight": (8, 16, 3, 3),
        "regular_conv.bias": (8,),
    }
    for name in ("offset_conv", "modulator_conv"):
        assert all(torch.all(p == 0) for p in getattr(layer, name).parameters())
    assert "regular_conv.bias" not in dict(ModulatedDeformConv2d(16, 8).named_parameters())


@pytest.mark.parametrize("implementation", ["sampling", "torchvision"])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_init_equals_plain_conv(implementation: str, stride: int) -> None:
    """Zero offsets and modulator ``2 * sigmoid(0) = 1``: exactly ``regular_conv``."""
    torch.manual_seed(1)
    layer = ModulatedDeformConv2d(6, 5, stride=stride, bias=True, implementation=implementation)
    x = torch.randn(2, 6, 9, 14)
    with torch.no_grad():
        expected = layer.regular_conv(x)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("project_first", [True, False])
@pytest.mark.parametrize(("batch", "cin", "cout", "height", "width", "stride"), SHAPES)
def test_functional_matches_torchvision(
    batch: int, cin: int, cout: int, height: int, width: int, stride: int, project_first: bool
) -> None:
    x, offset, mask, weight, bias = _random_case(
        batch, cin, cout, height, width, stride, torch.float32
    )
    expected = torchvision.ops.deform_conv2d(
        x, offset, weight, bias, stride=stride, padding=1, mask=mask
    )
    got = modulated_deform_conv2d(x, offset, mask, weight, bias, stride, 1, project_first)
    assert got.shape == expected.shape and got.is_contiguous()
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("project_first", [True, False])
def test_functional_exact_in_float64(project_first: bool) -> None:
    """Same corners and weights as torchvision, so float64 agrees to rounding; a third of the
    offsets are whole pixels, so those samples sit on the grid (and on the padding ring)."""
    x, offset, mask, weight, bias = _random_case(2, 5, 4, 11, 8, 1, torch.float64)
    offset[:, ::3] = offset[:, ::3].round()
    expected = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    got = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, project_first)
    assert (got - expected).abs().max().item() < 1e-10


@pytest.mark.parametrize(("cin", "cout", "stride", "bias"), [(8, 4, 1, False), (4, 8, 2, True)])
def test_module_matches_torchvision(cin: int, cout: int, stride: int, bias: bool) -> None:
    reference, sampling = _random_layers(cin, cout, stride, bias)
    x = torch.randn(2, cin, 11, 7)
    with torch.no_grad():
        offset = reference.offset_conv(x)
        expected = reference(x)
        got = sampling(x)
    outside = (offset.abs() > 3).float().mean().item()
    assert outside > 0.05, "offsets should push some samples out of the image"
    assert (got - expected).abs().max().item() < 1e-4


def _gradients(layer: ModulatedDeformConv2d, x: Tensor, upstream: Tensor) -> dict[str, Tensor]:
    x = x.clone().requires_grad_(True)
    layer.zero_grad()
    (layer(x) * upstream).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    grads["input"] = x.grad
    return grads


@pytest.mark.parametrize("project_first", [True, False])
@pytest.mark.parametrize(("cin", "cout", "stride"), [(6, 4, 1), (4, 6, 2)])
def test_gradients_match_torchvision(cin: int, cout: int, stride: int, project_first: bool) -> None:
    reference, sampling = _random_layers(cin, cout, stride, bias=True, seed=2)
    sampling.project_first = project_first
    x = torch.randn(2, cin, 10, 9)
    upstream = torch.randn_like(reference(x))
    expected = _gradients(reference, x, upstream)
    got = _gradients(sampling, x, upstream)
    assert set(got) == set(expected)
    for name, grad in expected.items():
        assert grad.abs().max() > 0, name
        assert _max_rel_diff(got[name], grad) < 1e-3, name


def test_zero_init_gradients_match_torchvision() -> None:
    """At initialisation every sample sits on the pixel grid, the padding row and column
    included; the one-sided offset gradients there must be torchvision's."""
    torch.manual_seed(3)
    reference = ModulatedDeformConv2d(5, 4, implementation="torchvision")
    sampling = ModulatedDeformConv2d(5, 4)
    sampling.load_state_dict(reference.state_dict())
    x = torch.randn(1, 5, 8, 6)
    upstream = torch.randn(1, 4, 8, 6)
    expected = _gradients(reference, x, upstream)
    got = _gradients(sampling, x, upstream)
    for name, grad in expected.items():
        assert _max_rel_diff(got[name], grad) < 1e-3, name


def test_weighted_gather_sum_export_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gather-multiply-sum written out for ONNX equals the embedding_bag path."""
    gen = torch.Generator().manual_seed(4)
    table = torch.randn(50, 7, generator=gen)
    index = torch.randint(0, 50, (12, 9), generator=gen)
    weight = torch.randn(12, 9, generator=gen)
    fused = weighted_gather_sum(table, index, weight)
    monkeypatch.setattr(deform.torch.onnx, "is_in_onnx_export", lambda: True)
    explicit = weighted_gather_sum(table, index, weight)
    expected = (table[index] * weight.unsqueeze(-1)).sum(dim=1)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("table_grad", "weight_grad"), [(True, True), (True, False), (False, True)]
)
def test_weighted_gather_sum_backward(table_grad: bool, weight_grad: bool) -> None:
    """The sort-based backward passes gradcheck (repeated rows, rows never read) and equals the
    gradients of the plain gather-multiply-sum."""
    gen = torch.Generator().manual_seed(5)
    table = torch.randn(40, 6, generator=gen, dtype=torch.float64).requires_grad_(table_grad)
    index = torch.randint(0, 30, (15, 8), generator=gen)  # rows 30-39 are never read
    index[0, :3] = 7  # one row read three times by one output
    weight = torch.randn(15, 8, generator=gen, dtype=torch.float64).requires_grad_(weight_grad)
    assert torch.autograd.gradcheck(lambda t, w: weighted_gather_sum(t, index, w), (table, weight))

    grad_out = torch.randn(15, 6, generator=gen, dtype=torch.float64)
    inputs = [tensor for tensor in (table, weight) if tensor.requires_grad]
    fused = torch.autograd.grad(weighted_gather_sum(table, index, weight), inputs, grad_out)
    plain = (table[index] * weight.unsqueeze(-1)).sum(dim=1)
    for got, expected in zip(fused, torch.autograd.grad(plain, inputs, grad_out), strict=True):
        torch.testing.assert_close(got, expected)
    if table_grad:
        assert fused[0][30:].abs().sum() == 0


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
@pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1")
@pytest.mark.parametrize(
    ("cin", "cout", "stride", "project_first"), [(8, 4, 1, True), (4, 6, 2, False)]
)
def test_onnx_export_matches_pytorch(cin: int, cout: int, stride: int, project_first: bool) -> None:
    """Legacy (TorchScript) exporter, opset 17, dynamic batch, height and width; onnxruntime
    output at the export size and at another odd, non-square size."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    _, layer = _random_layers(cin, cout, stride, bias=True, seed=5)
    layer.project_first = project_first
    layer.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        layer,
        (torch.randn(1, cin, 12, 16),),
        buffer,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={
            "x": {0: "batch", 2: "height", 3: "width"},
            "y": {0: "batch", 2: "h", 3: "w"},
        },
        dynamo=False,
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, cin, 12, 16), (2, cin, 9, 23)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = layer(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        assert got.shape == expected.shape
        assert abs(got - expected).max() < 1e-4


def test_rejects_bad_arguments() -> None:
    x, offset, mask, weight, _ = _random_case(1, 4, 4, 6, 6, 1, torch.float32)
    with pytest.raises(ValueError, match="offset"):
        modulated_deform_conv2d(x, offset[:, :16], mask, weight)
    with pytest.raises(ValueError, match="mask"):
        modulated_deform_conv2d(x, offset, mask[..., :5], weight)
    with pytest.raises(ValueError, match="implementation"):
        ModulatedDeformConv2d(4, 4, implementation="cuda")  # type: ignore[arg-type]


def test_order_rule() -> None:
    """Project first at stride 1 unless the output is much wider; sample first with a stride
    unless the output is much narrower (FeatherFace's SSH layers all project first)."""
    assert all(prefer_project_first(cin, cout, 1) for cin, cout in [(64, 32), (64, 16), (16, 16)])
    assert not prefer_project_first(8, 64, 1)
    assert not prefer_project_first(64, 64, 2)
    assert prefer_project_first(64, 16, 2)


@pytest.mark.gpu
def test_cuda_matches_torchvision() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cpu = _random_case(2, 8, 6, 13, 10, 1, torch.float32)
    x, offset, mask, weight, bias = (t.cuda() for t in cpu)
    expected = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    for project_first in (True, False):
        got = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, project_first)
        assert (got - expected).abs().max().item() < 1e-4
