"""Property-based fuzzing of every route, in the mode the suite runs in: the API with
schemathesis, against kbaudit's own OpenAPI document and against the Feather contract it is
wire-compatible with (no input may reach a 5xx, and every answer must match the schema of
its status); the console's pages and forms with hypothesis (no 5xx)."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from kbaudit.api.app import create_app
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import SCOPES
from kbaudit.services.keys import create_key
from tests.backends import SCALEOUT, scaleout_settings
from tests.conftest import CONTRACT


def _app() -> tuple[object, dict[str, str]]:
    """One app for every case (schemathesis parametrizes at import), in the suite's mode:
    a folder of its own (and a PostgreSQL database and bucket prefix of its own in the
    scale-out mode), removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="kbaudit-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # Private addresses allowed: a webhook's URL is then checked without a DNS lookup, and
    # no test talks to anything but 127.0.0.1.
    shared = scaleout_settings(lasting=True) if SCALEOUT else {}
    container = build_container(
        Settings(data_dir=folder, queue_url="inline", webhook_allow_private=True, **shared)
    )
    key = create_key(container.store, container.clock, "fuzz", SCOPES)
    return create_app(container), {"x-api-key": key}


APP, HEADERS = _app()
# Saving a destination writes to the bucket it names, AWS's when no endpoint is given: its
# bad input is tested in test_destinations.py, against SeaweedFS on 127.0.0.1.
OURS = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    operation_id="putKBAuditDestination"
)
FEATHER = schemathesis.openapi.from_path(CONTRACT)
FEATHER.app = APP  # the contract's cases, sent to kbaudit
CHECKS = [not_a_server_error, response_schema_conformance]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@OURS.parametrize()
@FUZZ
def test_kbaudit_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=HEADERS, checks=CHECKS)


@FEATHER.parametrize()
@FUZZ
def test_feather_contract(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=HEADERS, checks=CHECKS)


# Text a hostile client sends: any code point (NUL, surrogates' neighbours, digits of other
# scripts), numbers past any column, and the shapes the pages expect, slightly wrong.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["\x00", "%00", "\u00b2", "\u0663", "9" * 5000, "2026-01-01T00:00:00", "csv"]),
)
CONSOLE_PAGES = [
    "/console",
    "/console/records",
    "/console/records/rows",
    "/console/exports",
    "/console/exports/rows",
    "/console/access",
    "/console/retention",
]
CONSOLE_PARAMS = ["start", "end", "statuses", "cursor", "before", "window", "kb_ids"]
CONSOLE_FORMS = {
    "/console/exports": ["start", "end", "statuses", "export_format", "window"],
    "/console/retention": [
        "retention_days",
        "archive_before_delete",
        "legal_hold_enabled",
        "legal_hold_reason",
        "confirm",
    ],
    "/console/sign-in": ["api_key"],
}


def _console() -> tuple[TestClient, str]:
    client = TestClient(APP, raise_server_exceptions=False, follow_redirects=False)
    signed_in = client.post("/console/sign-in", data={"api_key": HEADERS["x-api-key"]})
    assert signed_in.status_code == 303, signed_in.text
    page = client.get("/console/exports").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    return client, csrf[1]


CONSOLE, CSRF = _console()
# Pages answer in milliseconds: many more examples than the API's, so that each page meets
# each kind of hostile text.
CONSOLE_FUZZ = settings(FUZZ, max_examples=400)


@CONSOLE_FUZZ
@given(
    page=st.sampled_from(CONSOLE_PAGES),
    params=st.dictionaries(st.sampled_from(CONSOLE_PARAMS), HOSTILE_TEXT, max_size=4),
)
def test_console_pages_answer_any_query_without_a_5xx(page: str, params: dict[str, str]) -> None:
    response = CONSOLE.get(page, params=params)
    assert response.status_code < 500, (page, params, response.text[:300])


@CONSOLE_FUZZ
@given(path=st.sampled_from(["/console/records/", "/console/exports/"]), tail=HOSTILE_TEXT)
def test_console_detail_pages_answer_any_name_without_a_5xx(path: str, tail: str) -> None:
    response = CONSOLE.get(path + quote(tail, safe=""))
    assert response.status_code < 500, (path, tail, response.text[:300])


@CONSOLE_FUZZ
@given(data=st.data(), form=st.sampled_from(sorted(CONSOLE_FORMS)))
def test_console_forms_answer_any_fields_without_a_5xx(data: st.DataObject, form: str) -> None:
    fields = data.draw(st.dictionaries(st.sampled_from(CONSOLE_FORMS[form]), HOSTILE_TEXT))
    response = CONSOLE.post(form, data={**fields, "csrf_token": CSRF})
    assert response.status_code < 500, (form, fields, response.text[:300])
