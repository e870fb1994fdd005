"""Property-based fuzzing of every route (schemathesis): against kbaudit's own OpenAPI
document and against the Feather contract it is wire-compatible with. No input may reach a
5xx, and every answer must match the schema of its status."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from kbaudit.api.app import create_app
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import SCOPES
from kbaudit.services.keys import create_key
from tests.conftest import CONTRACT


def _app() -> tuple[object, dict[str, str]]:
    """One app for every case (schemathesis parametrizes at import): the embedded default
    in a folder of its own, removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="kbaudit-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # Private addresses allowed: a webhook's URL is then checked without a DNS lookup, and
    # no test talks to anything but 127.0.0.1.
    settings_ = Settings(data_dir=folder, queue_url="inline", webhook_allow_private=True)
    container = build_container(settings_)
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
