"""Checks real API responses against the project's OpenAPI document."""

from __future__ import annotations

import functools

import jsonschema
import yaml

from shared.api.app import OPENAPI_PATH


@functools.cache
def document() -> dict:
    """The parsed OpenAPI document."""
    return yaml.safe_load(OPENAPI_PATH.read_text())


def _resolve(node: dict) -> dict:
    while "$ref" in node and len(node) == 1:
        target = document()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def assert_matches(path: str, method: str, response) -> None:
    """The response's status is documented for the operation, and its body fits the schema."""
    operation = document()["paths"][path][method.lower()]
    documented = operation["responses"]
    status = str(response.status_code)
    assert status in documented or (status >= "400" and "default" in documented), \
        f"{method} {path} answered undocumented {response.status_code}"
    content = _resolve(documented.get(status) or documented["default"])["content"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in content, f"{method} {path} {status} answered {media_type}, documented {sorted(content)}"
    schema = content[media_type]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document()["components"]},
                        cls=jsonschema.Draft202012Validator)
