"""Download WIDER FACE through torchvision, plus the official evaluation ground truth.

torchvision's :class:`~torchvision.datasets.WIDERFace` knows the official archive sources and
their MD5 sums; it fetches ``WIDER_{train,val,test}.zip`` (Google Drive, through the ``gdown``
package) and ``wider_face_split.zip`` and extracts them under ``<dest>/widerface``. The
evaluation ``.mat`` files are not part of it: they come from the WIDER FACE ``eval_tools.zip``,
which is fetched and extracted beside them (its publisher gives no checksum). The result is the
layout :mod:`featherface.data.layout` reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from featherface.data.layout import WiderLayout
from featherface.errors import FeatherFaceError

EVAL_TOOLS_URL = "http://shuoyang1213.me/WIDERFACE/support/eval_script/eval_tools.zip"


def _fetch_images_and_splits(dest: Path) -> Path:
    from torchvision.datasets import WIDERFace

    try:
        dataset = WIDERFace(str(dest), split="val", download=True)
    except (RuntimeError, OSError) as error:
        raise FeatherFaceError(f"WIDER FACE download into {dest} failed: {error}") from error
    return Path(dataset.root)


def _fetch_eval_tools(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    layout = WiderLayout(root)
    if layout.ground_truth_dir.is_dir():
        return
    try:
        download_and_extract_archive(EVAL_TOOLS_URL, download_root=str(root), md5=None)
    except (RuntimeError, OSError) as error:
        raise FeatherFaceError(f"eval_tools download into {root} failed: {error}") from error
    found = sorted(root.rglob("wider_easy_val.mat"))
    if not found:
        raise FeatherFaceError(f"{root}: eval_tools archive holds no wider_easy_val.mat")
    if found[0].parent != layout.ground_truth_dir:
        layout.ground_truth_dir.mkdir(parents=True, exist_ok=True)
        for mat in found[0].parent.glob("*.mat"):
            shutil.copy2(mat, layout.ground_truth_dir / mat.name)


def download_widerface(dest: str | Path, eval_tools: bool = True) -> Path:
    """Fetch WIDER FACE into ``dest/widerface`` and return that folder.

    Archives already extracted are not fetched again (torchvision checks the folders).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = _fetch_images_and_splits(dest)
    if eval_tools:
        _fetch_eval_tools(root)
    return root
