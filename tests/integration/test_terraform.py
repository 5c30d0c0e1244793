"""Terraform, checked offline (providers cannot be downloaded here; `terraform validate` and `plan` are
the first thing to run where they can, see the README).

- `terraform fmt -check` passes.
- The manifest-derived locals (terraform/manifest.tf) are evaluated by the real `terraform console` and
  compared with what shared/topology.py reads from the same manifest.
- The resources, parsed with python-hcl2, are wired to those locals: a function resource, a service
  account, a trigger and a dead-letter topic per function; publisher bindings exactly per `publishes`;
  scheduler jobs on declared topics; no secret value anywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from shared.stack.layout import REPO_ROOT
from shared.stack.services import DATABASE_ENCODING, DATABASE_ICU_LOCALE
from shared.topology import load_topology

TERRAFORM_DIR = REPO_ROOT / "terraform"
EXPECTED_FILES = {"versions.tf", "variables.tf", "outputs.tf", "pubsub.tf", "functions.tf", "scheduler.tf",
                  "sql.tf", "iam.tf", "secrets.tf", "manifest.tf", "main.tf", "preconditions.tf", "monitoring.tf"}


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    """(type, name) -> body of every resource in terraform/*.tf."""
    found = {}
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        with path.open() as handle:
            document = _unquote(hcl2.load(handle))
        for block in document.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    found[(kind, name)] = body
    return found


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    """The manifest-derived locals, as `terraform console` evaluates them."""
    root = tmp_path_factory.mktemp("tf")
    (root / "terraform").mkdir()
    (root / "shared").mkdir()
    shutil.copy(TERRAFORM_DIR / "manifest.tf", root / "terraform" / "manifest.tf")
    shutil.copy(REPO_ROOT / "shared" / "topology.yaml", root / "shared" / "topology.yaml")
    names = ["functions", "event_functions", "http_functions", "push_subscriptions", "hold_subscriptions",
             "dead_letter_topics", "publishers", "secret_readers", "topology"]
    expression = "jsonencode({" + ", ".join(f"{n} = local.{n}" for n in names) + "})"
    done = subprocess.run(["terraform", "console"], input=expression, capture_output=True, text=True,
                          cwd=root / "terraform", timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(json.loads(done.stdout.strip()))


def test_the_layout_has_one_file_per_concern_and_an_example_tfvars():
    assert EXPECTED_FILES <= {p.name for p in TERRAFORM_DIR.glob("*.tf")}
    assert (TERRAFORM_DIR / "terraform.tfvars.example").exists()


def test_terraform_fmt_is_clean():
    done = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff"], cwd=TERRAFORM_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_every_function_has_a_function_a_service_account_a_trigger_and_a_dlq(resources, evaluated):
    topology = load_topology()
    assert set(evaluated["functions"]) == {f.name for f in topology.functions}
    assert resources[("google_cloudfunctions2_function", "function")]["for_each"] == "${local.functions}"
    assert resources[("google_service_account", "function")]["for_each"] == "${local.functions}"
    function = resources[("google_cloudfunctions2_function", "function")]
    assert function["service_config"][0]["service_account_email"] == \
        "${google_service_account.function[each.key].email}"
    push = resources[("google_pubsub_subscription", "push")]
    assert push["for_each"] == "${local.push_subscriptions}"
    assert push["dead_letter_policy"][0]["dead_letter_topic"] == \
        "${google_pubsub_topic.topic[each.value.dead_letter_topic].id}"
    assert "oidc_token" in push["push_config"][0]
    for f in topology.functions:
        if f.http:
            assert f.name in evaluated["http_functions"]
            continue
        subscriptions = [s for s in evaluated["push_subscriptions"].values() if s["push_to"] == f.name]
        assert {s["topic"] for s in subscriptions} == set(f.trigger_topics), f.name
        for s in subscriptions:
            assert s["dead_letter_topic"] in evaluated["dead_letter_topics"]
            assert any(h["topic"] == s["dead_letter_topic"] for h in evaluated["hold_subscriptions"].values())
    invoker = resources[("google_cloud_run_v2_service_iam_member", "push_invoker")]
    assert invoker["for_each"] == "${local.event_functions}"
    assert invoker["member"] == "${google_service_account.pusher.member}"


def test_no_subscription_ever_expires_and_ack_deadlines_come_from_the_manifest(resources, evaluated):
    for kind in ("push", "hold"):
        subscription = resources[("google_pubsub_subscription", kind)]
        assert subscription["expiration_policy"] == [{"ttl": ""}], kind  # "" is never; the default is 31 days
        assert subscription["ack_deadline_seconds"] == "${each.value.ack_deadline_seconds}", kind
    topology = load_topology()
    for name, sub in evaluated["push_subscriptions"].items():
        assert sub["ack_deadline_seconds"] >= topology.function(sub["push_to"]).timeout_seconds, name


def test_publisher_bindings_are_exactly_the_manifests_publishes(resources, evaluated):
    expected = {(f.name, topic) for f in load_topology().functions for topic in f.publishes}
    assert {(p["function"], p["topic"]) for p in evaluated["publishers"].values()} == expected
    binding = resources[("google_pubsub_topic_iam_member", "publisher")]
    assert binding["for_each"] == "${local.publishers}"
    assert binding["topic"] == "${google_pubsub_topic.topic[each.value.topic].id}"
    assert binding["member"] == "${google_service_account.function[each.value.function].member}"
    # Nothing else grants publishing: only the service agent on dead-letter topics.
    publishers = [key for key, body in resources.items() if body.get("role") == "roles/pubsub.publisher"]
    assert sorted(publishers) == [("google_pubsub_topic_iam_member", "dlq_publisher"),
                                  ("google_pubsub_topic_iam_member", "publisher")]
    assert resources[("google_pubsub_topic_iam_member", "dlq_publisher")]["member"] == "${local.pubsub_service_agent}"
    assert not any("pubsub" in body.get("role", "") for (kind, _), body in resources.items()
                   if kind == "google_project_iam_member")


def test_scheduler_jobs_target_declared_topics(resources, evaluated):
    jobs = evaluated["topology"]["scheduler_jobs"]
    assert {j["topic"] for j in jobs} <= set(evaluated["topology"]["topics"])
    assert {"relay.tick", "prices.tick"} <= {j["topic"] for j in jobs}
    job = resources[("google_cloud_scheduler_job", "job")]
    assert job["pubsub_target"][0]["topic_name"] == "${google_pubsub_topic.topic[each.value.topic].id}"
    assert job["retry_config"]


def test_no_secret_value_is_a_literal(resources, evaluated):
    assert not [key for key in resources if key[0] == "google_secret_manager_secret_version"]
    text = "\n".join(p.read_text() for p in TERRAFORM_DIR.glob("*.tf"))
    assert "secret_data" not in text
    secret_env = resources[("google_cloudfunctions2_function", "function")]["service_config"][0]
    dynamic = secret_env["dynamic"][0]["secret_environment_variables"]["content"][0]
    assert dynamic["version"] == "latest"
    # Each function reads only its own secrets.
    expected = {(f.name, s) for f in load_topology().functions for s in f.secrets}
    assert {(r["function"], r["secret"]) for r in evaluated["secret_readers"].values()} == expected
    assert resources[("google_secret_manager_secret_iam_member", "reader")]["for_each"] == "${local.secret_readers}"
    settings = {name for f in load_topology().functions for name in f.settings}
    assert not settings & set(evaluated["topology"]["secrets"]), "a secret must not also be a plain setting"


_LOG_MESSAGE = re.compile(r'jsonPayload\.message=\\"([^"\\]+)\\"')  # as HCL writes it: \"...\"
_LOGGED_FIELD = re.compile(r"jsonPayload\.(\w+)")


def _log_calls() -> dict[str, str]:
    """Each log line the platform writes (its message) -> the source of its call, extras included."""
    calls = {}
    for path in (REPO_ROOT / "shared").rglob("*.py"):
        source = path.read_text()
        for match in re.finditer(r'log\.(?:debug|info|warning|error|exception)\(\s*"([^"]+)"', source):
            end = source.find("\n\n", match.start())
            calls[match.group(1)] = source[match.start():end if end > 0 else len(source)]
    return calls


def test_every_log_based_metric_counts_a_line_the_code_writes_with_the_fields_it_extracts(resources):
    """A renamed log line or extra would leave its metric, and the alert on it, silently at zero."""
    calls = _log_calls()
    metrics = {name: body for (kind, name), body in resources.items() if kind == "google_logging_metric"}
    assert {"reconcile_drifts", "held_dead_letters", "relay_lag_blocks", "prices_accepted",
            "retention_failures", "compliance_reviews_refused"} <= set(metrics)
    for name, body in metrics.items():
        messages = _LOG_MESSAGE.findall(body["filter"])
        assert len(messages) == 1, f"{name}: its filter names no one log message"
        call = calls.get(messages[0])
        assert call is not None, f"{name}: no log call writes {messages[0]!r}"
        extracted = " ".join([body["filter"], body.get("value_extractor", ""),
                              *body.get("label_extractors", {}).values()])
        for field in set(_LOGGED_FIELD.findall(extracted)) - {"message"}:
            assert f'"{field}"' in call, f"{name}: {messages[0]!r} is not logged with {field!r}"


def test_cloud_sql_has_iam_auth_backups_pitr_and_deletion_protection(resources):
    instance = resources[("google_sql_database_instance", "main")]
    settings = instance["settings"][0]
    assert instance["deletion_protection"] is True and settings["deletion_protection_enabled"] is True
    backup = settings["backup_configuration"][0]
    assert backup["enabled"] is True and backup["point_in_time_recovery_enabled"] is True
    flags = {f["name"]: f["value"] for f in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert resources[("google_sql_user", "function")]["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert "precondition" in instance["lifecycle"][0]


def test_the_database_is_utf8_with_cloud_sqls_one_collation(resources):
    # The stack's database collates as this one: ICU's en-US standing in for glibc's en_US.UTF8.
    database = resources[("google_sql_database", "escrow")]
    assert (database["charset"], database["collation"]) == ("UTF8", "en_US.UTF8")
    language, _, encoding = database["collation"].partition(".")  # glibc's name; ICU's spells it en-US
    assert (DATABASE_ENCODING, DATABASE_ICU_LOCALE) == (encoding, language.replace("_", "-"))


def test_the_connection_budget_fits_the_default_max_connections(evaluated):
    # The arithmetic sql.tf's precondition checks, on the manifest's numbers and the variable defaults.
    used = sum(f["max_instances"] * 4 for f in evaluated["topology"]["functions"])
    assert used <= 300 - 20


# ---------------------------------------------------------------- offline schema check

SCHEMA = json.loads((TERRAFORM_DIR / "provider-schema.json").read_text())
META_ARGUMENTS = {"for_each", "count", "depends_on", "provider"}
# Blocks Terraform itself defines on every resource.
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
HCL2_KEYS = {"__is_block__", "__comments__", "__inline_comments__"}
REFERENCE = re.compile(r"(?<![\w.])(data\.)?(google_[a-z0-9_]+)\.([a-z0-9_]+)(?:\[[^\]]*\])?\.([a-z0-9_]+)")


def _is_block(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__")
                                                          for v in value)


def schema_problems(where: str, body: dict, schema: dict) -> list[str]:
    """Every argument or nested block of `body` (python-hcl2's form) that `schema` does not declare."""
    found = []
    for key, value in body.items():
        if key in HCL2_KEYS or key in META_ARGUMENTS or key in META_BLOCKS:
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, generator in dynamic.items():
                    if label in HCL2_KEYS:
                        continue
                    if _unquote(label) not in schema["blocks"]:
                        found.append(f"{where}: no block {_unquote(label)}")
                        continue
                    for content in generator.get("content", []):
                        found += schema_problems(f"{where}.{_unquote(label)}", content,
                                                 schema["blocks"][_unquote(label)])
        elif _is_block(value):
            if key not in schema["blocks"]:
                found.append(f"{where}: no block {key}")
                continue
            for block in value:
                found += schema_problems(f"{where}.{key}", block, schema["blocks"][key])
        elif key not in schema["arguments"]:
            found.append(f"{where}: no argument {key}")
    return found


def _declared(kind: str) -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(TERRAFORM_DIR.rglob("*.tf")):
        with path.open() as handle:
            document = hcl2.load(handle)
        for block in document.get(kind, []):
            for type_name, named in block.items():
                for name, body in named.items():
                    if _unquote(type_name) in HCL2_KEYS:
                        continue
                    found[(_unquote(type_name), _unquote(name))] = body
    return found


def test_the_schema_file_is_of_the_pinned_provider_version():
    from shared.deploy.provider_schema import BINDINGS_VERSION, PROVIDER_VERSION, used_types

    pinned = re.search(r'source\s*=\s*"hashicorp/google"\s*version\s*=\s*"([^"]+)"',
                       (TERRAFORM_DIR / "versions.tf").read_text()).group(1)
    assert pinned == PROVIDER_VERSION
    bootstrap_pin = re.search(r'source\s*=\s*"hashicorp/google"\s*version\s*=\s*"([^"]+)"',
                              (TERRAFORM_DIR / "bootstrap" / "main.tf").read_text()).group(1)
    assert bootstrap_pin == PROVIDER_VERSION, "both stages run on the provider version the schema is of"
    assert SCHEMA["provider"] == f"hashicorp/google {PROVIDER_VERSION}"
    assert SCHEMA["bindings"] == f"@cdktf/provider-google {BINDINGS_VERSION}"
    used = used_types()
    assert set(SCHEMA["resource"]) == used["resource"] and set(SCHEMA["data"]) == used["data"], \
        "terraform/ uses a type the schema file lacks: python -m shared.deploy.provider_schema"


def test_every_argument_and_block_is_in_the_providers_schema():
    problems = []
    for kind in ("resource", "data"):
        for (type_name, name), body in _declared(kind).items():
            problems += schema_problems(f"{kind} {type_name}.{name}", body, SCHEMA[kind][type_name])
    assert problems == []


def test_every_reference_names_an_attribute_of_its_type():
    problems = []
    for path in sorted(TERRAFORM_DIR.rglob("*.tf")):
        for data, type_name, name, attribute in REFERENCE.findall(path.read_text()):
            schema = SCHEMA["data" if data else "resource"].get(type_name)
            if schema is None:
                problems.append(f"{path.name}: {type_name}.{name} is not declared")
            elif attribute not in schema["attributes"]:
                problems.append(f"{path.name}: {type_name}.{name} has no attribute {attribute}")
    assert problems == []


@pytest.mark.parametrize("mistake, expected", [
    ({"ack_deadline_secs": "60"}, "no argument ack_deadline_secs"),
    ({"expiration_polcy": [{"ttl": '""', "__is_block__": True}]}, "no block expiration_polcy"),
    ({"push_config": [{"push_endpont": "x", "__is_block__": True}]}, "push_config: no argument push_endpont"),
    ({"push_config": [{"oidc": [{"audience": "x", "__is_block__": True}], "__is_block__": True}]},
     "push_config: no block oidc"),
])
def test_a_misspelt_argument_or_block_is_caught(mistake, expected):
    body = {"name": "x", "topic": "t", **mistake, "__is_block__": True}
    problems = schema_problems("resource google_pubsub_subscription.x", body,
                               SCHEMA["resource"]["google_pubsub_subscription"])
    assert len(problems) == 1 and problems[0].endswith(expected), problems


# ---------------------------------------------------------------- preconditions, evaluated offline

PRECONDITION_FILES = ("manifest.tf", "variables.tf", "preconditions.tf")


def _preconditions(tmp_path: Path, tfvars: str) -> dict:
    """The preconditions' locals as `terraform console` evaluates them with these variable values."""
    (tmp_path / "terraform").mkdir()
    (tmp_path / "shared").mkdir()
    for name in PRECONDITION_FILES:
        shutil.copy(TERRAFORM_DIR / name, tmp_path / "terraform" / name)
    shutil.copy(REPO_ROOT / "shared" / "topology.yaml", tmp_path / "shared" / "topology.yaml")
    (tmp_path / "terraform" / "given.tfvars").write_text(tfvars)
    expression = ("jsonencode({missing = local.missing_settings, undeclared = local.undeclared_settings, "
                  "connections = local.function_connections, fit = local.connections_fit})")
    done = subprocess.run(["terraform", "console", "-var-file=given.tfvars"], input=expression, capture_output=True,
                          text=True, cwd=tmp_path / "terraform", timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(json.loads(done.stdout.strip()))


def test_the_example_tfvars_passes_every_precondition(tmp_path):
    evaluated = _preconditions(tmp_path, (TERRAFORM_DIR / "terraform.tfvars.example").read_text())
    assert evaluated["missing"] == {} and evaluated["undeclared"] == {}
    assert evaluated["fit"] is True and evaluated["connections"] == 4 * sum(
        f.max_instances for f in load_topology().functions)


def test_a_tfvars_without_a_functions_settings_fails_its_precondition_by_name(tmp_path):
    example = (TERRAFORM_DIR / "terraform.tfvars.example").read_text()
    start = example.index("  callbacks = {")
    without_callbacks = example[:start] + example[example.index("  }\n", start) + 4:]
    evaluated = _preconditions(tmp_path, without_callbacks)
    assert evaluated["missing"] == {"callbacks": ["SENDGRID_WEBHOOK_PUBLIC_KEY", "TWILIO_STATUS_CALLBACK_URL"]}


def test_a_tfvars_value_the_function_never_reads_fails_its_precondition_by_name(tmp_path):
    example = (TERRAFORM_DIR / "terraform.tfvars.example").read_text()
    misspelt = example.replace("  settle = {\n", '  settle = {\n    PREREQUISITE_GRACE_SECOND = "600"\n', 1)
    evaluated = _preconditions(tmp_path, misspelt)
    assert evaluated["undeclared"] == {"settle": ["PREREQUISITE_GRACE_SECOND"]}
    assert evaluated["missing"] == {}



def test_the_build_runs_as_the_deployer_the_bootstrap_creates():
    import yaml

    bootstrap = (TERRAFORM_DIR / "bootstrap" / "main.tf").read_text()
    account = re.search(r'resource "google_service_account" "deployer" \{\s*account_id\s*=\s*"([^"]+)"', bootstrap)
    cloudbuild = yaml.safe_load((REPO_ROOT / "cloudbuild.yaml").read_text())
    assert cloudbuild["serviceAccount"] == (
        f"projects/$PROJECT_ID/serviceAccounts/{account.group(1)}@$PROJECT_ID.iam.gserviceaccount.com")
    pool = re.search(r'resource "google_cloudbuild_worker_pool" "build" \{\s*name\s*=\s*"([^"]+)"', bootstrap)
    assert cloudbuild["substitutions"]["_WORKER_POOL"] == pool.group(1)
