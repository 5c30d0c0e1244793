"""The committed contract artifacts are exactly what the project's build step produces."""

import subprocess

from shared.stack.layout import REPO_ROOT


def test_committed_artifacts_match_a_fresh_compile():
    completed = subprocess.run(
        ["node", "shared/chain/compile.mjs", "--check"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
