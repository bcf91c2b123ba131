"""Image to network input, as the reference code prepares it.

The reference detectors take BGR images (the channel order OpenCV reads) as float32 minus the
per-channel mean (104, 117, 123), not scaled, in NCHW layout.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 123.0)


def to_network_input(rgb: np.ndarray) -> Tensor:
    """``uint8[H, W, 3]`` RGB -> ``float32[3, H, W]``: reversed to BGR, mean subtracted."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape [H, W, 3], got {rgb.shape}")
    # the uint8 planes are laid out first (one small copy), then converted and shifted in place:
    # about ten times faster at 640 x 640 than converting the interleaved image
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1)[::-1]).astype(np.float32)
    planes -= np.asarray(MEAN_BGR, dtype=np.float32)[:, None, None]
    return torch.from_numpy(planes)
