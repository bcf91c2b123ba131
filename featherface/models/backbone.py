"""MobileNetV1 x0.25, the backbone of RetinaFace-MobileNet0.25 and FeatherFace.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications" (2017), Table 1, at width multiplier 0.25, in the variant of the RetinaFace code
(biubug6/Pytorch_Retinaface, ``models/net.py``): every activation is LeakyReLU(0.1), the network
stops at 256 channels (stride 32), and it is cut into three stages whose outputs feed the
detector's pyramid:

=======  ======  ========
stage    stride  channels
=======  ======  ========
stage1   8       64
stage2   16      128
stage3   32      256
=======  ======  ========

Each strided 3x3 convolution (kernel 3, padding 1, stride 2) maps a side ``n`` to ``ceil(n / 2)``,
so a level of stride ``s`` has ``ceil(H / s) x ceil(W / s)`` cells for any input size.

Parameter names (``stage1.0.0.weight`` ...) are those of the original code, so the ``body.*``
tensors of the reference checkpoints and the ``module.*`` tensors of the ImageNet file load by
stripping the prefix.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from featherface.errors import FeatherFaceError
from featherface.models.checkpoint import read_weights_file

LEAKY_SLOPE = 0.1


class ConvBNAct(nn.Sequential):
    """``Conv2d(k, stride, padding=k // 2, bias=False) -> BatchNorm2d -> LeakyReLU``.

    ``negative_slope=None`` leaves out the activation (a linear block); 0 gives a plain ReLU.
    Children are numbered ``0`` (conv), ``1`` (norm), ``2`` (activation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        negative_slope: float | None = LEAKY_SLOPE,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if negative_slope is not None:
            layers.append(nn.LeakyReLU(negative_slope, inplace=True))
        super().__init__(*layers)


class DepthwiseSeparable(nn.Sequential):
    """MobileNet block: 3x3 depthwise conv (stride ``stride``) + BN + LeakyReLU, then 1x1
    pointwise conv ``in_channels -> out_channels`` + BN + LeakyReLU (children ``0``-``5``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        negative_slope: float = LEAKY_SLOPE,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class MobileNetV1(nn.Module):
    """MobileNetV1 x0.25 feature extractor (no classifier).

    ``forward(Tensor[B, 3, H, W]) -> [Tensor[B, 64, H/8, W/8], Tensor[B, 128, H/16, W/16],
    Tensor[B, 256, H/32, W/32]]`` (sides rounded up). ``feature_info`` lists ``channels`` and
    ``stride`` of each output, in that order. Measured size: 213,072 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            ConvBNAct(3, 8, stride=2),
            DepthwiseSeparable(8, 16),
            DepthwiseSeparable(16, 32, stride=2),
            DepthwiseSeparable(32, 32),
            DepthwiseSeparable(32, 64, stride=2),
            DepthwiseSeparable(64, 64),
        )
        self.stage2 = nn.Sequential(
            DepthwiseSeparable(64, 128, stride=2),
            *(DepthwiseSeparable(128, 128) for _ in range(5)),
        )
        self.stage3 = nn.Sequential(
            DepthwiseSeparable(128, 256, stride=2),
            DepthwiseSeparable(256, 256),
        )
        self.feature_info: list[dict[str, int]] = [
            {"channels": 64, "stride": 8},
            {"channels": 128, "stride": 16},
            {"channels": 256, "stride": 32},
        ]

    @property
    def channels(self) -> list[int]:
        """Channels of the three outputs: ``[64, 128, 256]``."""
        return [info["channels"] for info in self.feature_info]

    def forward(self, x: Tensor) -> list[Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return [c3, c4, c5]


def _read_legacy_checkpoint(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FeatherFaceError(f"{path}: ImageNet weights file not found")
    checkpoint = read_weights_file(path)  # weights_only: never runs code from the file
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise FeatherFaceError(f"{path}: expected a dict with a 'state_dict' entry")
    state_dict = checkpoint["state_dict"]
    if not all(isinstance(name, str) for name in state_dict):
        raise FeatherFaceError(f"{path}: 'state_dict' has keys that are not tensor names")
    return state_dict


def load_imagenet_weights(backbone: MobileNetV1, path: str | Path) -> None:
    """Load the ImageNet-pretrained ``mobilenetV1X0.25_pretrain.tar`` of the RetinaFace project.

    The file is a legacy ``torch.save`` dict (``epoch`` int, ``arch`` str, ``state_dict``
    OrderedDict, ``best_acc1`` 0-d tensor, ``optimizer`` dict of plain values and tensors) whose
    ``state_dict`` names the backbone tensors ``module.stage1.*`` ... ``module.stage3.*`` and the
    unused ImageNet classifier ``module.fc.*``. All of that is plain data, so it is read with
    ``torch.load(weights_only=True)`` (:func:`~featherface.models.checkpoint.read_weights_file`):
    a file that would run code when unpickled is refused, never executed.

    The ``module.`` prefix is stripped, ``fc.*`` is dropped, and every backbone tensor must be
    present with the right shape; anything else raises :class:`FeatherFaceError`.
    """
    path = Path(path)
    source = {
        (name[len("module.") :] if name.startswith("module.") else name): tensor
        for name, tensor in _read_legacy_checkpoint(path).items()
    }
    source = {name: tensor for name, tensor in source.items() if not name.startswith("fc.")}
    target = backbone.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        raise FeatherFaceError(
            f"{path}: not a MobileNetV1 x0.25 state_dict "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for name, tensor in source.items():
        if not isinstance(tensor, Tensor) or tensor.shape != target[name].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise FeatherFaceError(
                f"{path}: {name} has shape {shape}, expected {tuple(target[name].shape)}"
            )
    try:
        backbone.load_state_dict(source)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise FeatherFaceError(f"{path}: weights do not fit MobileNetV1 x0.25: {first}") from None
