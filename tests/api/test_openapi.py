"""The OpenAPI document is complete: every operation has a readable id, a summary, a description and an
example answer; every schema, property and parameter a description and an example; signed operations
declare the signature headers as their security; every response declares the rate-limit headers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from exchange.api.app import create_app
from exchange.api.openapi import OPERATIONS
from tests.api.conftest import Api, make_settings

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = create_app(make_settings(Path("never-started")), list_calendar=False).openapi()
    return document


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_operation_has_a_readable_id_a_summary_a_description_and_an_example(doc: dict[str, Any]) -> None:
    problems = []
    ids = []
    for method, path, op in _operations(doc):
        where = f"{method} {path}"
        ids.append(op.get("operationId"))
        if (method, path) not in OPERATIONS:
            problems.append(f"{where}: not in exchange.api.openapi.OPERATIONS")
        if not SNAKE.match(op.get("operationId", "")) or "v1" in op["operationId"]:
            problems.append(f"{where}: operation id {op.get('operationId')!r} does not read well")
        if not op.get("summary"):
            problems.append(f"{where}: no summary")
        if len(op.get("description", "").split("Signed request;")[0].strip()) < 20:
            problems.append(f"{where}: no description")
        success = next((r for status, r in op["responses"].items() if status.startswith("2")), None)
        assert success is not None, where
        for media_type, content in success.get("content", {}).items():
            example = content.get("example", content.get("examples"))
            if example is None and "schema" in content:
                example = _resolve(doc, content["schema"]).get("examples")
            if not example:
                problems.append(f"{where}: no example of its {media_type} answer")
        for status, response in op["responses"].items():
            declared = set(response.get("headers", {}))
            if not {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= declared:
                problems.append(f"{where} {status}: the rate-limit headers are not declared")
    assert not problems, "\n".join(problems)
    assert len(ids) == len(set(ids)), "operation ids must be unique"
    assert {"create_order", "list_trades", "cancel_order", "get_balances"} <= set(ids)


def test_every_schema_property_and_parameter_has_a_description_and_an_example(doc: dict[str, Any]) -> None:
    problems = []
    for name, schema in doc["components"]["schemas"].items():
        if not schema.get("description") or schema["description"] == schema.get("title"):
            problems.append(f"schema {name}: no description")
        if not schema.get("examples"):
            problems.append(f"schema {name}: no example")
        for prop_name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                problems.append(f"{name}.{prop_name}: no description")
            if "examples" not in prop and "example" not in prop:
                problems.append(f"{name}.{prop_name}: no example")
    for method, path, op in _operations(doc):
        for parameter in op.get("parameters", []):
            where = f"{method} {path} {parameter['in']} parameter {parameter['name']}"
            if not parameter.get("description"):
                problems.append(f"{where}: no description")
            schema = parameter.get("schema", {})
            options = [schema, *schema.get("anyOf", [])]
            if not ("example" in parameter or "examples" in parameter
                    or any("enum" in s or "examples" in s or "default" in s for s in options)):
                problems.append(f"{where}: no example")
    assert not problems, "\n".join(problems)


def test_signed_operations_declare_the_signature_headers_and_really_need_them(doc: dict[str, Any], api: Api) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert {(s["type"], s["in"], s["name"]) for s in schemes.values()} == {
        ("apiKey", "header", "EX-ACCESS-KEY"), ("apiKey", "header", "EX-ACCESS-TIMESTAMP"),
        ("apiKey", "header", "EX-ACCESS-SIGN")}
    for method, path, op in _operations(doc):
        concrete = path.replace("{symbol}", "H100-M40-261203").replace("{order_id}", "1").replace(
            "{client_order_id}", "x").replace("{account_id}", "1").replace("{key_id}", "ak_0123456789abcdef")
        unsigned = api.client.request(method, concrete, json={} if method in ("POST", "PUT", "PATCH") else None)
        if "security" in op:
            assert op["security"] == [{"ApiKey": [], "Timestamp": [], "Signature": []}]
            assert op["x-required-scope"] in ("read", "trade", "operator")
            assert unsigned.status_code == 401, (method, path)
        else:
            assert unsigned.status_code != 401, (method, path)
