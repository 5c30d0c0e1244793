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


def test_steps_run_in_order_identities_before_migrations_before_the_full_apply():
    assert [step["id"] for step in _document()["steps"]] == [
        "install", "lint", "test", "package", "identities", "secrets", "migrate", "terraform"]


def test_the_build_runs_in_the_private_pool_that_reaches_cloud_sql():
    document = _document()
    assert document["options"]["pool"]["name"] == (
        "projects/$PROJECT_ID/locations/${_REGION}/workerPools/${_WORKER_POOL}")
    assert document["substitutions"]["_WORKER_POOL"]


def test_every_python_step_installs_the_tools_it_calls():
    for step in _document()["steps"]:
        command = (step.get("args") or [""])[-1]
        if "make " in command:
            assert command.startswith("bash .ci/cloudbuild/install-prerequisites.sh && "), step["id"]


def _run_terraform_script(tmp_path, stage: str, branch: str | None) -> list[str]:
    """Run terraform.sh with a stand-in `terraform` that records its arguments; return them."""
    fake = tmp_path / "bin" / "terraform"
    fake.parent.mkdir(exist_ok=True)
    record = tmp_path / "calls"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {record}\n")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "PROJECT_ID": "p", "REGION": "r", "STATE_BUCKET": "b"}
    if branch is not None:
        env["BRANCH_NAME"] = branch
    done = subprocess.run(["sh", str(REPO_ROOT / ".ci/cloudbuild/terraform.sh"), stage], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return record.read_text().splitlines() if record.exists() else []


def test_a_manual_build_without_branch_name_plans(tmp_path):
    assert _run_terraform_script(tmp_path, "identities", None)[-1] == "validate"
    assert _run_terraform_script(tmp_path, "all", None)[-1].startswith("plan -input=false")


def test_main_applies_the_identities_first_then_everything(tmp_path):
    identities = _run_terraform_script(tmp_path, "identities", "main")[-1]
    assert identities.startswith("apply") and "-target=google_sql_user.function" in identities
    everything = _run_terraform_script(tmp_path, "all", "main")[-1]
    assert everything.startswith("apply") and "-target" not in everything


def test_migrations_skip_without_a_branch_and_log_in_as_the_migrator(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PROJECT_ID": "p", "SQL_INSTANCE": "p:r:i", "MIGRATOR_DB_USER": "db-migrator@p.iam",
           "MIGRATOR_SA": "db-migrator@p.iam.gserviceaccount.com", "DB_NAME": "escrow"}
    done = subprocess.run(["bash", str(REPO_ROOT / ".ci/cloudbuild/migrate.sh")], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0 and "manual build" in done.stdout
    assert '--impersonate-service-account="$MIGRATOR_SA"' in (REPO_ROOT / ".ci/cloudbuild/migrate.sh").read_text()


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
                       ".ci/cloudbuild/terraform.sh", ".ci/cloudbuild/check-secrets.sh"}
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



def _check_secrets(tmp_path, versions: dict[str, str]) -> subprocess.CompletedProcess:
    """check-secrets.sh on main, with a stand-in gcloud answering `versions` (secret -> enabled version)."""
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    cases = "".join(f'  {name}) echo "{version}" ;;\n' for name, version in versions.items())
    fake.write_text(f"#!/bin/bash\ncase \"$4\" in\n{cases}  *) ;;\nesac\n")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "PROJECT_ID": "p", "BRANCH_NAME": "main"}
    return subprocess.run(["bash", str(REPO_ROOT / ".ci/cloudbuild/check-secrets.sh")], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT)


def test_a_deploy_is_refused_while_a_secret_has_no_value(tmp_path):
    from shared.topology import load_topology, secret_id

    ids = [secret_id(name) for name in load_topology().secrets]
    refused = _check_secrets(tmp_path, {name: "1" for name in ids[1:]})
    assert refused.returncode == 1
    assert f"no enabled version of {ids[0]}." in refused.stderr


def test_a_deploy_goes_on_when_every_secret_has_a_value(tmp_path):
    from shared.topology import load_topology, secret_id

    assert _check_secrets(tmp_path, {secret_id(name): "1" for name in load_topology().secrets}).returncode == 0
