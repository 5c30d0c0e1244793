"""schemathesis against the running api, driven by the OpenAPI document the api serves.

Positive and negative cases for every operation, a bounded number each: no input may get a 5xx, and
every answer (errors included) must match the document: status, content type and body schema.
"""

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.api.app import OPENAPI_PATH
from shared.topology import load_topology
from tests.conftest import TEST_LAYOUT

# Per operation and generation mode; enough to find the classes of bad input, small enough for `make test`.
EXAMPLES_PER_OPERATION = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The document is read from the repository (the file the api serves); the stack fixture starts the api.
schema = schemathesis.openapi.from_path(OPENAPI_PATH)
schema.config.update(base_url=f"http://127.0.0.1:{TEST_LAYOUT.function_port(load_topology(), 'api')}")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error_or_breaks_the_document(case, stack):
    case.call_and_validate(checks=CHECKS, timeout=10)


def test_the_api_still_serves_after_the_fuzzing(stack):
    port = stack.layout.function_port(stack.topology, "api")
    assert requests.get(f"http://127.0.0.1:{port}/escrows?limit=1", timeout=10).status_code == 200
