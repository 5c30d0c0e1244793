"""Every function loads its modules with the cyclic collector paused and then freezes them
(shared/startup.py): main.py imports `shared.startup` before any other platform module and calls
`startup.loaded()` once its module-level objects exist; after that the collector runs again."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from shared.deploy.package import REPO_ROOT
from shared.topology import load_topology

FUNCTIONS = load_topology().functions


def test_the_collector_is_paused_while_loading_and_runs_once_loaded_with_the_loaded_objects_frozen():
    probe = (
        "import gc; assert gc.isenabled() and gc.get_freeze_count() == 0\n"
        "from shared import startup; assert not gc.isenabled()\n"
        "import sqlalchemy\n"
        "startup.loaded(); print(gc.isenabled(), gc.get_freeze_count())\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO_ROOT)})
    assert ran.returncode == 0, ran.stderr
    enabled, frozen = ran.stdout.split()
    assert enabled == "True"
    assert int(frozen) > 50_000  # SQLAlchemy alone leaves well over that many tracked objects


def _module_level(function) -> list[ast.stmt]:
    return ast.parse((REPO_ROOT / function.source / "main.py").read_text()).body


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.name)
def test_main_imports_startup_before_any_other_platform_module(function):
    platform_imports = [node for node in _module_level(function)
                        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "shared"]
    first = platform_imports[0]
    assert first.module == "shared" and [alias.name for alias in first.names] == ["startup"]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.name)
def test_main_calls_loaded_after_its_last_module_level_object(function):
    body = _module_level(function)
    calls = [i for i, node in enumerate(body) if isinstance(node, ast.Expr) and ast.unparse(node) == "startup.loaded()"]
    assert len(calls) == 1
    assignments = [i for i, node in enumerate(body) if isinstance(node, ast.Assign | ast.AnnAssign)]
    assert calls[0] > max(assignments)
