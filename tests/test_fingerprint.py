"""code_fingerprint hashes the code that the named modules import, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

import featherface.utils.fingerprint as fingerprint_module
from featherface.utils.fingerprint import code_fingerprint
from tests.test_imports import make_package


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``featherface`` package standing in for the real one."""
    root = make_package(
        tmp_path,
        {
            "__init__.py": "",
            "stages/__init__.py": "",
            "stages/train.py": "def run():\n    from featherface.engine import loop\n",
            "stages/export.py": "import featherface.models\n",
            "engine/__init__.py": "",
            "engine/loop.py": "from featherface import models\n",
            "models/__init__.py": "WIDTH = 8\n",
            "report.py": "",
        },
        "featherface",
    )
    monkeypatch.setattr(fingerprint_module, "package_root", lambda: root)
    return root


def test_the_fingerprint_follows_the_code_the_modules_run(fake: Path) -> None:
    train = code_fingerprint("featherface.stages.train")
    assert len(train) == 64 and train == code_fingerprint("featherface.stages.train")
    export = code_fingerprint("featherface.stages.export")
    both = code_fingerprint("featherface.stages.train", "featherface.stages.export")
    assert len({train, export, both}) == 3

    (fake / "report.py").write_text("print('edited')\n")  # imported by neither
    (fake / "stages" / "export.py").write_text("import featherface.models  # edited\n")
    assert code_fingerprint("featherface.stages.train") == train

    (fake / "engine" / "loop.py").write_text("from featherface import models  # edited\n")
    edited = code_fingerprint("featherface.stages.train")  # a lazy import of the stage
    assert edited != train
    (fake / "models" / "__init__.py").write_text("WIDTH = 16\n")
    assert code_fingerprint("featherface.stages.train") != edited


def test_the_fingerprint_covers_file_paths(fake: Path) -> None:
    before = code_fingerprint("featherface.stages.export")
    (fake / "models" / "__init__.py").rename(fake / "models.py")
    assert code_fingerprint("featherface.stages.export") != before  # same bytes, other file


def test_callers_must_name_their_modules(fake: Path) -> None:
    with pytest.raises(ValueError, match="needs the modules"):
        code_fingerprint()
    with pytest.raises(ModuleNotFoundError, match=r"featherface\.stages\.nope"):
        code_fingerprint("featherface.stages.nope")


def test_the_real_package() -> None:
    assert code_fingerprint("featherface.utils.fingerprint") != code_fingerprint(
        "featherface.utils.imports"
    )


def test_a_stage_is_keyed_on_its_own_code_only() -> None:
    """Editing export/ leaves the teacher's resume key alone; editing a model it builds does not."""
    from featherface.utils.imports import closure_files, package_root

    files = {
        path.relative_to(package_root()).as_posix()
        for path in closure_files("featherface.stages.teacher")
    }
    assert "stages/teacher.py" in files and "models/featherface_v1.py" in files
    assert not any(name.startswith(("export/", "prune/", "cli/")) for name in files)
    assert "stages/distill.py" not in files
