"""Liveness, readiness and metrics."""

from __future__ import annotations

import re

from kbaudit.api.docs import STATIC
from tests.conftest import Api


class _Unreachable:
    def ping(self) -> None:
        raise OSError("gone")


def test_readiness_names_the_backend_that_fails(api: Api) -> None:
    assert api.client.get("/readyz").status_code == 200
    api.container.exports.blobs = _Unreachable()  # type: ignore[assignment]
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "blob_store": "unavailable",
        "queue": "ok",
    }
    assert api.client.get("/healthz").status_code == 200


def test_metrics_count_requests_and_written_records(api: Api) -> None:
    from tests.helpers import RECORDS, record

    api.client.post(RECORDS, json={"items": [record(), record()]}, headers=api.key())
    text = api.client.get("/metrics").text
    assert 'kbaudit_records_written_total{outcome="created"} 2.0' in text
    assert 'route="/v1/knowledge-base/audit/retrievals",status="200"' in text


def test_the_api_docs_need_no_internet(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        html = api.client.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, page
        for source in sources:
            assert source.startswith("/"), (page, source)
            assert api.client.get(source).status_code == 200, source
        assert "fonts.googleapis" not in html
    assert '"validatorUrl": null' in api.client.get("/docs").text
    for page in ("/docs", "/redoc"):
        policy = api.client.get(page).headers["content-security-policy"]
        assert policy.startswith("default-src 'none'; script-src 'self'"), page
        assert "unsafe-eval" not in policy
        assert "connect-src 'self'" in policy
    assert api.client.get("/openapi.json").json()["info"]["title"] == "kbaudit"


def test_no_vendored_file_loads_anything_from_another_host() -> None:
    """Links in the libraries' texts are fine; an image, font, style or script they would
    fetch from elsewhere is not (scripts/vendor.sh rewrites Redoc's logo)."""
    asset = re.compile(rb"https?://[\w./-]+\.(?:svg|png|gif|ico|woff2?|ttf|css|js)\b")
    for path in (STATIC / "vendor").iterdir():
        found = [url for url in asset.findall(path.read_bytes()) if not url.startswith(DOC_LINKS)]
        assert found == [], path.name


# Project pages the bundles name in comments and error messages, never load.
DOC_LINKS = (b"https://marked.js", b"https://redux.js", b"https://github.com/")
