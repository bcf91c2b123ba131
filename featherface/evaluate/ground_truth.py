"""Where evaluation ground truth comes from: official ``.mat`` files or the prepared tables."""

from __future__ import annotations

from pathlib import Path

from featherface.data.layout import WiderLayout
from featherface.data.wider_mat import GROUND_TRUTH_FILE
from featherface.errors import FeatherFaceError
from featherface.evaluate.wider_ap import WiderGroundTruth


def load_ground_truth(source: str | Path) -> WiderGroundTruth:
    """Validation ground truth from ``source``, which may be

    - a folder holding ``wider_face_val.mat`` and the easy/medium/hard keep lists;
    - a WIDER-layout root (its ``eval_tools/ground_truth``);
    - the output folder of ``prepare``: the ``.mat`` files of its data set when present (the
      official protocol, where WIDER's invalid faces are ignored rather than absent), else its
      tables.
    """
    source = Path(source)
    if (source / GROUND_TRUTH_FILE).is_file():
        return WiderGroundTruth.from_mat(source)
    if (WiderLayout(source).ground_truth_dir / GROUND_TRUTH_FILE).is_file():
        return WiderGroundTruth.from_mat(WiderLayout(source).ground_truth_dir)
    if (source / "dataset.json").is_file():
        from featherface.data.prepare import load_prepared

        prepared = load_prepared(source)
        mat_folder = WiderLayout(prepared.root).ground_truth_dir
        if (mat_folder / GROUND_TRUTH_FILE).is_file():
            return WiderGroundTruth.from_mat(mat_folder)
        return WiderGroundTruth.from_tables(prepared.images, prepared.faces)
    raise FeatherFaceError(
        f"{source}: no {GROUND_TRUTH_FILE} here, in eval_tools/ground_truth, or a prepare output"
    )
