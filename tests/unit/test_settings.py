import json
from decimal import Decimal

import pytest

from shared.compliance.settings import ComplianceSettings, SanctionsSourceSettings
from shared.errors import ConfigurationError
from shared.reconcile.settings import ReconcileSettings
from shared.relay.settings import ChainSettings
from shared.risk.settings import RiskSettings
from shared.settings import Settings

COMPLETE = {
    "SERVICE_NAME": "settle",
    "GCP_PROJECT": "p",
    "DB_NAME": "escrow",
    "DB_USER": "fn_settle",
    "DB_HOST": "127.0.0.1",
    "DB_PORT": "5432",
}


def test_complete_tcp_settings_load():
    settings = Settings.from_env(COMPLETE)
    assert settings.database.host == "127.0.0.1"
    assert settings.database.port == 5432
    assert settings.parts == {}
    with pytest.raises(ConfigurationError, match="ChainSettings was not loaded"):
        settings.part(ChainSettings)


def test_cloud_sql_instance_replaces_host_and_port():
    env = {k: v for k, v in COMPLETE.items() if k not in ("DB_HOST", "DB_PORT")}
    env["DB_INSTANCE_CONNECTION_NAME"] = "proj:region:instance"
    assert Settings.from_env(env).database.instance_connection_name == "proj:region:instance"


@pytest.mark.parametrize("missing", ["DB_NAME", "DB_USER", "GCP_PROJECT", "SERVICE_NAME"])
def test_missing_required_variable_is_named(missing):
    env = {k: v for k, v in COMPLETE.items() if k != missing}
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(env)
    assert missing in str(raised.value)
    assert raised.value.missing == (missing,)


def test_partial_tcp_target_names_the_missing_port():
    env = {k: v for k, v in COMPLETE.items() if k != "DB_PORT"}
    with pytest.raises(ConfigurationError, match="DB_PORT"):
        Settings.from_env(env)


def test_no_database_target_at_all_names_both_ways():
    env = {k: v for k, v in COMPLETE.items() if k not in ("DB_HOST", "DB_PORT")}
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(env)
    assert "DB_HOST" in str(raised.value) and "DB_INSTANCE_CONNECTION_NAME" in str(raised.value)


def test_blank_value_counts_as_missing():
    with pytest.raises(ConfigurationError, match="DB_NAME"):
        Settings.from_env({**COMPLETE, "DB_NAME": "  "})


def test_malformed_port_is_reported():
    with pytest.raises(ConfigurationError, match="DB_PORT='abc' is not an integer"):
        Settings.from_env({**COMPLETE, "DB_PORT": "abc"})


@pytest.mark.parametrize("host", ["localhost", "http://127.0.0.1:8085", "127.0.0.1:port", "a b:1", ":8085"])
def test_a_malformed_pubsub_emulator_host_stops_startup(host):
    with pytest.raises(ConfigurationError, match="PUBSUB_EMULATOR_HOST=.* is not host:port"):
        Settings.from_env({**COMPLETE, "PUBSUB_EMULATOR_HOST": host})


def test_a_pubsub_emulator_host_is_taken_as_host_and_port():
    Settings.from_env({**COMPLETE, "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"})
    Settings.from_env({**COMPLETE, "PUBSUB_EMULATOR_HOST": "pubsub-emulator.local:8085"})


def test_chain_settings_are_required_when_asked_for():
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(COMPLETE, parts=[ChainSettings])
    for name in ("ETH_RPC_URL", "CHAIN_ID", "ESCROW_CONTRACT_ADDRESS", "CONFIRMATIONS"):
        assert name in raised.value.missing


ETH_ASSET = {"symbol": "ETH", "token": "0x" + "00" * 20, "decimals": 18, "coingecko_id": "ethereum",
             "chainlink_aggregator": "0x5fbdb2315678afecb367f032d93f642f64180aa3", "heartbeat_seconds": 3600,
             "deviation_threshold": "0.005", "liquidation_threshold": "0.825"}


def _risk(**env):
    return Settings.from_env({**COMPLETE, "PRICE_ASSETS": json.dumps([ETH_ASSET]), **env}, parts=[RiskSettings])


def test_assets_load_with_exact_fractions_and_checksummed_addresses():
    [asset] = _risk().part(RiskSettings).assets
    assert asset.liquidation_threshold == Decimal("0.825")
    assert asset.chainlink_aggregator == "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize(("change", "problem"), [
    ({"liquidation_threshold": 0.825}, "liquidation_threshold must be a decimal string"),
    ({"deviation_threshold": "1.5"}, "deviation_threshold must be a decimal string in (0, 1]"),
    ({"heartbeat_seconds": 0}, "heartbeat_seconds must be a positive integer"),
    ({"token": "0x123"}, "token is not an address"),
])
def test_a_malformed_asset_is_named(change, problem):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**COMPLETE, "PRICE_ASSETS": json.dumps([{**ETH_ASSET, **change}])}, parts=[RiskSettings])
    assert problem in str(caught.value)


def test_tier_thresholds_default_and_must_fall():
    assert dict(_risk().part(RiskSettings).tier_thresholds) == {
        "WARNING": Decimal("1.5"), "MARGIN_CALL": Decimal("1.2"), "LIQUIDATION": Decimal("1.0")}
    with pytest.raises(ConfigurationError, match="must fall"):
        _risk(RISK_TIER_THRESHOLDS="WARNING=1.5,MARGIN_CALL=1.6,LIQUIDATION=1.0")
    with pytest.raises(ConfigurationError, match="exactly WARNING, MARGIN_CALL, LIQUIDATION"):
        _risk(RISK_TIER_THRESHOLDS="WARNING=1.5")


COMPLIANCE = {**COMPLETE, "PROHIBITED_JURISDICTIONS": "kp, IR", "HIGH_RISK_JURISDICTIONS": "none"}


def test_compliance_policy_loads_with_defaults_for_tuning_only():
    policy = Settings.from_env(COMPLIANCE, parts=[ComplianceSettings]).part(ComplianceSettings)
    assert policy.prohibited_jurisdictions == {"KP", "IR"}
    assert policy.high_risk_jurisdictions == frozenset()
    assert (policy.min_age, policy.name_review_threshold, policy.name_report_threshold) == (18, 0.92, 0.85)


def test_the_jurisdiction_lists_are_required_policy():
    env = {k: v for k, v in COMPLIANCE.items() if k != "PROHIBITED_JURISDICTIONS"}
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(env, parts=[ComplianceSettings])
    assert raised.value.missing == ("PROHIBITED_JURISDICTIONS",)


@pytest.mark.parametrize("name, value, message", [
    ("PROHIBITED_JURISDICTIONS", "KP,Narnia", "NARNIA not ISO 3166-1"),
    ("NAME_MATCH_REPORT_THRESHOLD", "0.95", "NAME_MATCH_REPORT_THRESHOLD <= NAME_MATCH_REVIEW_THRESHOLD"),
    ("AML_REVIEW_SCORE", "0", "AML_REVIEW_SCORE must be 1 to 100"),
])
def test_malformed_compliance_settings_stop_startup(name, value, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({**COMPLIANCE, name: value}, parts=[ComplianceSettings])


def test_the_refresh_needs_its_list_source():
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(COMPLIANCE, parts=[ComplianceSettings, SanctionsSourceSettings])
    assert raised.value.missing == ("SANCTIONS_LIST_BASE_URL",)


@pytest.mark.parametrize("name, value", [
    ("SNAPSHOT_RETENTION_DAYS", "0"),
    ("MARGIN_EVENT_RETENTION_DAYS", "1"),  # the reconciler compares the last day of them with notify's
    ("NOTIFICATION_RETENTION_DAYS", "7"),  # a delivery row stops a redelivered event being sent again
    ("OUTBOX_RETENTION_DAYS", "0"),
    ("INBOX_RETENTION_DAYS", "7"),  # Pub/Sub may redeliver for 7 days
    ("REJECTED_MESSAGE_RETENTION_DAYS", "7"),
    ("RELAY_KEEP_BLOCKS", "127"),
    ("PRUNE_MAX_ROWS", "0"),
])
def test_retention_below_its_floor_stops_startup(name, value):
    with pytest.raises(ConfigurationError, match="retention below its floor"):
        Settings.from_env({**COMPLETE, name: value}, parts=[ReconcileSettings])


@pytest.mark.parametrize("name, value", [
    ("SNAPSHOT_RETENTION_DAYS", "36501"),
    ("MARGIN_EVENT_RETENTION_DAYS", "3000000000"),  # beyond a PostgreSQL integer: every run would fail
    ("REJECTED_MESSAGE_RETENTION_DAYS", "99999"),
    ("PRUNE_MAX_ROWS", "1000001"),
])
def test_retention_above_its_ceiling_stops_startup(name, value):
    with pytest.raises(ConfigurationError, match="retention above its ceiling"):
        Settings.from_env({**COMPLETE, name: value}, parts=[ReconcileSettings])


@pytest.mark.parametrize("retentions", [
    {"PRICE_HISTORY_RETENTION_DAYS": "60"},  # below the margin events' 90 days
    {"PRICE_HISTORY_RETENTION_DAYS": "20", "MARGIN_EVENT_RETENTION_DAYS": "10"},  # below the snapshots' 30
])
def test_price_history_shorter_than_what_names_its_prices_stops_startup(retentions):
    with pytest.raises(ConfigurationError, match="PRICE_HISTORY_RETENTION_DAYS must be at least"):
        Settings.from_env({**COMPLETE, **retentions}, parts=[ReconcileSettings])


def test_price_history_as_long_as_what_names_its_prices_is_accepted():
    retentions = {"PRICE_HISTORY_RETENTION_DAYS": "30", "MARGIN_EVENT_RETENTION_DAYS": "30"}
    settings = Settings.from_env({**COMPLETE, **retentions}, parts=[ReconcileSettings])
    assert settings.part(ReconcileSettings).price_history_retention_days == 30



@pytest.mark.parametrize("value", ["0", "-5", "1.5", "abc", "nan", "\u00b2", "1e3"])
def test_a_function_timeout_that_is_not_a_positive_whole_number_stops_startup(value):
    with pytest.raises(ConfigurationError, match=f"FUNCTION_TIMEOUT_SECONDS='{value}' is not a positive whole"):
        Settings.from_env({**COMPLETE, "FUNCTION_TIMEOUT_SECONDS": value})


def test_the_function_timeout_is_read_and_optional():
    assert Settings.from_env({**COMPLETE, "FUNCTION_TIMEOUT_SECONDS": "120"}).function_timeout_seconds == 120
    assert Settings.from_env(COMPLETE).function_timeout_seconds is None


def test_the_compliance_reviewers_are_read_in_their_canonical_spelling():
    from shared.api.settings import ApiSettings

    settings = Settings.from_env({**COMPLETE, "COMPLIANCE_REVIEWERS": " MLRO@Example.org , analyst@example.org,"},
                                 parts=[ApiSettings])
    assert settings.part(ApiSettings).compliance_reviewers == {"mlro@example.org", "analyst@example.org"}


@pytest.mark.parametrize("value, message", [
    (None, "missing COMPLIANCE_REVIEWERS"),
    ("  ", "missing COMPLIANCE_REVIEWERS"),
    (",", "COMPLIANCE_REVIEWERS names nobody"),
    ("mlro", "'mlro' not email addresses"),
    ("group:ops@example.org ops@example.org", "not email addresses"),
    ("@example.org", "not email addresses"),
    ("a\x00b@example.org", "not email addresses"),
    ("r" * 190 + "@example.org", "not email addresses of at most 200 characters"),
], ids=["absent", "blank", "only-commas", "no-domain", "space-inside", "no-local-part", "nul", "too-long"])
def test_compliance_reviewers_that_name_nobody_usable_stop_startup(value, message):
    from shared.api.settings import ApiSettings

    env = {**COMPLETE, **({} if value is None else {"COMPLIANCE_REVIEWERS": value})}
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env, parts=[ApiSettings])
