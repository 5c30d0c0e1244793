"""cloudbuild.yaml parses, runs its steps in the required order on pinned images, and every script
it calls exists (and, for shell scripts, parses)."""

import re
import subprocess

import yaml

from shared.stack.layout import REPO_ROOT

CLOUDBUILD = REPO_ROOT / "cloudbuild.yaml"


def _document() -> dict:
    return yaml.safe_load(CLOUDBUILD.read_text())


def _image(step: dict, substitutions: dict) -> str:
    return re.sub(r"\$\{(_[A-Z_]+)\}", lambda m: substitutions[m.group(1)], step["name"])


def test_steps_run_in_order_install_lint_test_package_migrate_terraform():
    assert [step["id"] for step in _document()["steps"]] == [
        "install", "lint", "test", "package", "migrate", "terraform"]


def test_every_step_uses_a_pinned_image():
    document = _document()
    for step in document["steps"]:
        image = _image(step, document["substitutions"])
        assert ":" in image.rsplit("/", 1)[-1], f"{step['id']} image {image} has no tag"
        assert not image.endswith(":latest"), f"{step['id']} uses :latest"


def test_project_and_region_are_substitutions():
    document = _document()
    assert "_REGION" in document["substitutions"]
    text = CLOUDBUILD.read_text()
    assert "$PROJECT_ID" in text and "${_REGION}" in text


def test_every_called_script_and_make_target_exists():
    text = CLOUDBUILD.read_text()
    scripts = set(re.findall(r"(\.ci/cloudbuild/[\w.-]+\.sh)", text))
    assert scripts == {".ci/cloudbuild/install-prerequisites.sh", ".ci/cloudbuild/migrate.sh",
                       ".ci/cloudbuild/terraform.sh"}
    for script in scripts:
        path = REPO_ROOT / script
        assert path.exists(), script
        shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
        parsed = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make (\w+)", text)):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"make {target} is not a Makefile target"
    assert "shared.deploy.migrate" in (REPO_ROOT / ".ci/cloudbuild/migrate.sh").read_text()
