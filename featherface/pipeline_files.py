"""Where the DVC pipeline leaves its model files (paths relative to the repository root, as in
``dvc.yaml``): the defaults of the commands that work on "the pipeline's models"."""

from __future__ import annotations

from pathlib import Path

MODEL_FILES: dict[str, Path] = {
    "teacher": Path("stages/teacher/model.pt"),  # FeatherFace V1
    "student": Path("stages/distill/model.pt"),  # distilled Nano-B
    "pruned": Path("stages/finetune/model.pt"),  # pruned, fine-tuned Nano-B
    "onnx": Path("stages/export/model.onnx"),  # the pruned Nano-B exported
    "teacher_onnx": Path("stages/export/teacher.onnx"),  # the teacher exported
}
EVALUATED: tuple[str, ...] = ("teacher", "student", "pruned", "onnx")  # evaluate's default set


def existing_model_files(names: tuple[str, ...], root: Path = Path(".")) -> dict[str, Path]:
    """``{name: root / path}`` of the named model files that exist, in the order of ``names``."""
    found = {name: root / MODEL_FILES[name] for name in names}
    return {name: path for name, path in found.items() if path.is_file()}
