"""How the functions' pool opens connections: whether pg8000 asks the server for TLS."""

import pytest

from shared import db
from shared.settings import DatabaseSettings


@pytest.mark.parametrize(("host", "asked"), [
    ("127.0.0.1", False),
    ("127.8.9.10", False),
    ("::1", False),
    ("localhost", False),
    ("10.20.0.3", None),  # a private address: another machine, TLS when the server offers it
    ("2001:db8::5", None),
    ("db.internal.example", None),  # a name may resolve anywhere
    ("localhost.example.org", None),
])
def test_tls_is_asked_for_except_on_loopback(host, asked):
    assert db.tls_request(host) is asked


class _RecordingConnector:
    """Stands in for the Cloud SQL connector (not reachable here): records what a connection asked for."""

    calls: list[dict] = []

    def __init__(self, **options) -> None:
        self.options = options

    def connect(self, instance, driver, **kwargs):
        self.calls.append({"instance": instance, "driver": driver, **kwargs})
        raise ConnectionRefusedError("no Cloud SQL here")


def test_the_cloud_sql_connectors_tls_socket_is_not_asked_for_tls_again(monkeypatch):
    import google.cloud.sql.connector

    monkeypatch.setattr(google.cloud.sql.connector, "Connector", _RecordingConnector)
    settings = DatabaseSettings(name="escrow", user="fn-settle@project.iam", host=None, port=None,
                                instance_connection_name="project:region:instance")
    engine = db.Engine(db._cloud_sql_connect(settings))
    with pytest.raises(db.DatabaseUnavailable, match="no Cloud SQL here"), engine.connect():
        pass
    [call] = _RecordingConnector.calls
    assert (call["driver"], call["ssl_context"], call["enable_iam_auth"]) == ("pg8000", False, True)
