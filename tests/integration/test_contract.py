"""kbaudit's OpenAPI against the Feather contract: same operations, parameters and shapes."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from kbaudit.api.app import create_app
from kbaudit.container import Container
from tests.conftest import CONTRACT

Schema = dict[str, Any]

# Where the contract is published beside a checkout of this repository.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "contract" / CONTRACT.name


def load_contract() -> Schema:
    document: Schema = json.loads(CONTRACT.read_text())
    return document


def contract_operations() -> list[Any]:
    return [
        pytest.param(path, method, id=f"{method} {path}")
        for path, methods in load_contract()["paths"].items()
        for method in methods
    ]


# The published contract's content (canonical JSON), as copied into docs/contract/.
PUBLISHED_SHA256 = "1c83ca612380a97b1a6e0daccd678f2a3a416b703b2a24ed3892f6e7d7b56721"


def content_sha256(document: Schema) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def test_the_copy_is_the_published_contract() -> None:
    """The copy holds the contract as published; where the published file sits beside
    this checkout, it still is that contract (a new version means a new copy)."""
    assert content_sha256(load_contract()) == PUBLISHED_SHA256
    published = [json.loads(SHARED.read_text())] if SHARED.exists() else []
    assert [content_sha256(document) for document in published] in ([], [PUBLISHED_SHA256])


def shape(schema: Schema, document: Schema, seen: frozenset[str] = frozenset()) -> Any:
    """What a client relies on in a schema: types, formats, nullability, limits, fields."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return f"<recursive {name}>"
        return shape(document["components"]["schemas"][name], document, seen | {name})
    variants = schema.get("anyOf")
    if variants:
        kinds = [v for v in variants if v.get("type") != "null"]
        nullable = len(kinds) < len(variants)
        inner = shape(kinds[0], document, seen) if len(kinds) == 1 else "<union>"
        return {"nullable": nullable, "of": inner}
    described: dict[str, Any] = {
        key: schema[key]
        for key in ("type", "format", "minimum", "maximum", "maxLength", "enum", "default")
        if key in schema
    }
    if "items" in schema:
        described["items"] = shape(schema["items"], document, seen)
    if "properties" in schema:
        described["properties"] = {
            name: shape(value, document, seen) for name, value in schema["properties"].items()
        }
        described["required"] = sorted(schema.get("required", []))
    if "additionalProperties" in schema:
        described["additionalProperties"] = bool(schema["additionalProperties"])
    return {"nullable": False, "of": described}


def covers(want: Any, have: Any, accepting: bool = False) -> bool:
    """``have`` offers all that ``want`` promises: the same shapes, and objects may add
    optional fields (kbaudit adds, never changes). What kbaudit is ``accepting`` (a request)
    may also take more values of an enum: ``parquet`` beside ``csv`` and ``ndjson``."""
    if not (isinstance(want, dict) and isinstance(have, dict)):
        return bool(want == have)
    if set(want) - {"properties"} != set(have) - {"properties"}:
        return False
    for key, value in want.items():
        if key == "properties":
            added = set(have[key]) - set(value)
            if added & set(have.get("required", [])):
                return False
            if any(
                name not in have[key] or not covers(shape_, have[key][name], accepting)
                for name, shape_ in value.items()
            ):
                return False
        elif key == "enum" and accepting:
            if not set(value) <= set(have[key]):
                return False
        elif not covers(value, have[key], accepting):
            return False
    return True


def differences(contract: Schema, ours: Schema, path: str, method: str) -> list[str]:
    """Every way our operation departs from the contract's; empty when they agree."""
    wanted = contract["paths"][path][method]
    have = ours.get("paths", {}).get(path, {}).get(method)
    if have is None:
        return [f"{method.upper()} {path} is missing"]
    found = []
    our_params = {(p["name"], p["in"]): p for p in have.get("parameters", [])}
    for param in wanted.get("parameters", []):
        key = (param["name"], param["in"])
        mine = our_params.get(key)
        if mine is None:
            found.append(f"parameter {key} is missing")
            continue
        if mine.get("required", False) != param.get("required", False):
            found.append(f"parameter {key}: required differs")
        if not covers(shape(param["schema"], contract), shape(mine["schema"], ours)):
            found.append(f"parameter {key}: schema differs")
    for status, response in wanted.get("responses", {}).items():
        mine = have.get("responses", {}).get(status)
        if mine is None:
            found.append(f"response {status} is missing")
            continue
        for media, content in response.get("content", {}).items():
            our_content = mine.get("content", {}).get(media, {})
            want = shape(content["schema"], contract)
            if not covers(want, shape(our_content.get("schema", {}), ours)):
                found.append(f"response {status} {media}: schema differs")
    if "requestBody" in wanted:
        want_body = wanted["requestBody"]["content"]["application/json"]["schema"]
        have_body = have.get("requestBody", {}).get("content", {}).get("application/json", {})
        want, our_body = shape(want_body, contract), shape(have_body.get("schema", {}), ours)
        if "additionalProperties" not in want["of"]:
            # kbaudit refuses request fields the contract does not name (a misspelt filter
            # must not widen an export); every field it names is accepted as it says.
            our_body["of"].pop("additionalProperties", None)
        if not covers(want, our_body, accepting=True):
            found.append("request body schema differs")
    if have.get("security") != wanted.get("security"):
        found.append("security differs")
    return found


@pytest.fixture
def our_openapi(container: Container) -> Schema:
    return create_app(container).openapi()


@pytest.mark.parametrize(("path", "method"), contract_operations())
def test_operation_matches_the_contract(our_openapi: Schema, path: str, method: str) -> None:
    assert differences(load_contract(), our_openapi, path, method) == []


@pytest.mark.parametrize(("path", "method"), contract_operations())
def test_parameters_keep_the_contracts_names_and_order(
    our_openapi: Schema, path: str, method: str
) -> None:
    wanted = [
        (p["name"], p["in"]) for p in load_contract()["paths"][path][method].get("parameters", [])
    ]
    ours = [(p["name"], p["in"]) for p in our_openapi["paths"][path][method].get("parameters", [])]
    assert [named for named in ours if named in wanted] == wanted


def test_security_scheme_is_the_x_api_key_header(our_openapi: Schema) -> None:
    contract_scheme = load_contract()["components"]["securitySchemes"]
    assert our_openapi["components"]["securitySchemes"] == contract_scheme


@pytest.mark.parametrize(
    "mutation",
    [
        "rename_response_field",
        "drop_response_field",
        "make_field_nullable",
        "drop_param_limit",
        "add_required_field",
    ],
)
def test_comparison_notices_a_drifted_schema(our_openapi: Schema, mutation: str) -> None:
    drifted = copy.deepcopy(our_openapi)
    schemas = drifted["components"]["schemas"]
    summary = schemas["RetrievalAuditLogSummary"]["properties"]
    if mutation == "rename_response_field":
        summary["trace"] = summary.pop("trace_id")
    elif mutation == "drop_response_field":
        del summary["query_hash"]
    elif mutation == "make_field_nullable":
        summary["created_at"] = {"anyOf": [summary["created_at"], {"type": "null"}]}
    elif mutation == "add_required_field":
        summary["extra"] = {"type": "string"}
        schemas["RetrievalAuditLogSummary"]["required"].append("extra")
    else:
        for param in drifted["paths"]["/v1/knowledge-base/audit/retrievals"]["get"]["parameters"]:
            if param["name"] == "limit":
                param["schema"].pop("maximum")
    path, method = "/v1/knowledge-base/audit/retrievals", "get"
    assert differences(load_contract(), our_openapi, path, method) == []
    assert differences(load_contract(), drifted, path, method) != []


def test_an_added_optional_field_is_allowed(our_openapi: Schema) -> None:
    added = copy.deepcopy(our_openapi)
    added["components"]["schemas"]["RetrievalAuditLogSummary"]["properties"]["extra"] = {
        "type": "string"
    }
    path, method = "/v1/knowledge-base/audit/retrievals", "get"
    assert differences(load_contract(), added, path, method) == []
