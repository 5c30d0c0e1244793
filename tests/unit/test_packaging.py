"""What each function's zip holds: its import closure of shared/, nothing of the tooling, and an edit
changes only the zips of the functions that import the edited code."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shared.deploy.package import REPO_ROOT, build
from shared.topology import load_topology

FUNCTIONS = load_topology().functions
TOOLING = ("shared/stack/", "shared/deploy/", "shared/migrations/", "shared/ops/", "shared/chain/contracts/",
           "shared/chain/compile.mjs", "tests/")


def _source_copy(target: Path) -> Path:
    """A copy of the parts packaging reads (functions/ and shared/), to edit without touching the repo."""
    for part in ("functions", "shared"):
        shutil.copytree(REPO_ROOT / part, target / part, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _hashes(root: Path, dist: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(build(f, dist, root).read_bytes()).hexdigest() for f in FUNCTIONS}


def _names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zipped:
        return zipped.namelist()


def test_a_one_line_edit_in_settle_changes_only_settles_zip(tmp_path: Path):
    root = _source_copy(tmp_path / "repo")
    before = _hashes(root, tmp_path / "before")
    assert _hashes(root, tmp_path / "again") == before  # reproducible byte for byte
    service = root / "shared" / "settlement" / "service.py"
    service.write_text(service.read_text() + "# a one-line edit\n")
    after = _hashes(root, tmp_path / "after")
    assert [name for name in before if before[name] != after[name]] == ["settle"]


def test_an_edit_in_code_every_function_imports_changes_every_zip(tmp_path: Path):
    root = _source_copy(tmp_path / "repo")
    before = _hashes(root, tmp_path / "before")
    errors = root / "shared" / "errors.py"
    errors.write_text(errors.read_text() + "# a one-line edit\n")
    after = _hashes(root, tmp_path / "after")
    assert sorted(name for name in before if before[name] != after[name]) == sorted(f.name for f in FUNCTIONS)


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.name)
def test_a_zip_ships_its_import_closure_and_no_tooling(function, tmp_path: Path):
    archive = build(function, tmp_path / "dist")
    names = _names(archive)
    assert [name for name in names if name.startswith(TOOLING)] == []
    assert len(names) < len(list((REPO_ROOT / "shared").rglob("*.py")))  # a part of shared/, not all of it
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacked)
    modules = sorted(name[:-3].replace("/", ".").removesuffix(".__init__")
                     for name in names if name.startswith("shared/") and name.endswith(".py"))
    # Every shipped module imports from the zip alone (the repo is not on the path): nothing is missing.
    probe = ("import sys; sys.path = [p for p in sys.path if p not in ('', %r)]; sys.path.insert(0, '.');"
             "import importlib; [importlib.import_module(m) for m in %r];"
             "import shared; assert shared.__file__.startswith(%r), shared.__file__"
             % (str(REPO_ROOT), modules, str(unpacked)))
    imported = subprocess.run([sys.executable, "-c", probe], cwd=unpacked, capture_output=True, text=True,
                              timeout=120)
    assert imported.returncode == 0, imported.stderr[-2000:]
