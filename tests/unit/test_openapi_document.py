import re

from shared.api.app import create_app
from shared.api.settings import ApiSettings
from shared.settings import Settings
from tests.support.openapi import document

ENV = {"SERVICE_NAME": "api", "GCP_PROJECT": "p", "DB_NAME": "d", "DB_USER": "u", "DB_HOST": "h", "DB_PORT": "1",
       "COMPLIANCE_REVIEWERS": "mlro@example.org"}


def _app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings.from_env(ENV, parts=[ApiSettings]))
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_every_route_is_documented_and_every_documented_operation_exists():
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert _app_routes() == documented


def test_documented_query_parameters_are_the_ones_the_api_accepts():
    from shared.api.escrow_queries import QUERY_PARAMETERS

    parameters = document()["paths"]["/escrows"]["get"]["parameters"]
    assert {p["name"] for p in parameters} == set(QUERY_PARAMETERS)
