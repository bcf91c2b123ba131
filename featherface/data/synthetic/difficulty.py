"""WIDER-style face attributes and the easy/medium/hard keep rules of the synthetic set.

Attributes (integer codes of ``featherface.data.schema.ATTRIBUTE_RANGES``), from what the
generator did to each face of box height ``h`` px:

- blur: ``s = sigma / h`` with ``sigma = sqrt(sigma_face^2 + sigma_image^2)`` the Gaussian blur
  of the face and of the whole image; 0 (clear) if ``s < 0.012``, 1 (normal) if ``s < 0.04``,
  else 2 (heavy).
- expression: 1 for a wide-open mouth, else 0.
- illumination: 1 when, at the box centre, the light's shade (multiplier) is below 0.5 or its
  glare (screen towards white) above 0.4, else 0.
- occlusion: from the fraction ``c`` of the face's own pixels inside its box hidden by later
  layers (occluders, faces in front); 0 if ``c < 0.05``, 1 if ``c < 0.4``, else 2.
- pose: 1 when ``|rotation| > 20`` degrees, the width squash is below 0.75 or ``|yaw| > 0.6``.
- invalid: 1 when ``c > 0.85`` (the face is almost fully hidden), else 0.

Keep lists (``easy`` within ``medium`` within ``hard``, like WIDER's):

- hard: ``h >= 14`` and not invalid;
- medium: hard and ``h >= 40``, occlusion < 2 and blur < 2;
- easy: medium and ``h >= 48``, occlusion, blur, pose and illumination all 0.

Measured with the default ``SyntheticConfig`` (seed 0) on its 200 val images (2,220 boxes):
easy 16.2%, medium 37.9%, hard 84.6% of the boxes (WIDER FACE val: about 18%, 34%, 80%).
"""

from __future__ import annotations

import math

import pandas as pd

from featherface.data.schema import KEEP_COLUMNS

BLUR_NORMAL = 0.012
BLUR_HEAVY = 0.04
DARK_SHADE = 0.5
BRIGHT_GLARE = 0.4
OCCLUSION_PARTIAL = 0.05
OCCLUSION_HEAVY = 0.4
INVALID_HIDDEN = 0.85
POSE_ROTATION_DEG = 20.0
POSE_SQUASH = 0.75
POSE_YAW = 0.6

HARD_MIN_HEIGHT = 14
MEDIUM_MIN_HEIGHT = 40
EASY_MIN_HEIGHT = 48


def blur_code(sigma: float, height: float) -> int:
    """0 / 1 / 2 for ``sigma / height`` below ``BLUR_NORMAL`` / below ``BLUR_HEAVY`` / above."""
    ratio = sigma / max(height, 1.0)
    return 0 if ratio < BLUR_NORMAL else 1 if ratio < BLUR_HEAVY else 2


def occlusion_code(hidden: float) -> int:
    """0 / 1 / 2 for a hidden fraction below ``OCCLUSION_PARTIAL`` / ``OCCLUSION_HEAVY`` / above."""
    return 0 if hidden < OCCLUSION_PARTIAL else 1 if hidden < OCCLUSION_HEAVY else 2


def face_attributes(
    *,
    height: float,
    blur_sigma: float,
    expression: int,
    shade: float,
    glare: float,
    hidden: float,
    rotation_deg: float,
    squash: float,
    yaw: float,
) -> dict[str, int]:
    """The six WIDER attribute codes of one face, by the rules of the module docstring."""
    atypical = abs(rotation_deg) > POSE_ROTATION_DEG or squash < POSE_SQUASH or abs(yaw) > POSE_YAW
    return {
        "blur": blur_code(blur_sigma, height),
        "expression": int(expression),
        "illumination": int(shade < DARK_SHADE or glare > BRIGHT_GLARE),
        "invalid": int(hidden > INVALID_HIDDEN),
        "occlusion": occlusion_code(hidden),
        "pose": int(atypical),
    }


def combined_sigma(face_sigma: float, image_sigma: float) -> float:
    """``sqrt(face_sigma^2 + image_sigma^2)``: two Gaussian blurs in a row."""
    return math.hypot(face_sigma, image_sigma)


def assign_keep_lists(faces: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``faces`` with ``keep_easy``/``keep_medium``/``keep_hard`` (dtype
    "boolean") filled by the rules of the module docstring; other columns are unchanged."""
    result = faces.copy()
    hard = (result["h"] >= HARD_MIN_HEIGHT) & (result["invalid"] == 0)
    medium = (
        hard & (result["h"] >= MEDIUM_MIN_HEIGHT) & (result["occlusion"] < 2) & (result["blur"] < 2)
    )
    typical = (
        (result["occlusion"] == 0)
        & (result["blur"] == 0)
        & (result["pose"] == 0)
        & (result["illumination"] == 0)
    )
    easy = medium & (result["h"] >= EASY_MIN_HEIGHT) & typical
    for column, keep in zip(KEEP_COLUMNS, (easy, medium, hard), strict=True):
        result[column] = keep.astype("boolean")
    return result
