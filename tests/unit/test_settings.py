import pytest

from shared.errors import ConfigurationError
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
    assert settings.chain is None


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


def test_chain_settings_are_required_when_asked_for():
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(COMPLETE, chain=True)
    for name in ("ETH_RPC_URL", "CHAIN_ID", "ESCROW_CONTRACT_ADDRESS", "CONFIRMATIONS"):
        assert name in raised.value.missing
