"""Destinations: the customer's own bucket (SeaweedFS on 127.0.0.1, an identity allowed into
one bucket). Saving one proves access or says which step failed and why; an export that
names one arrives there as its recipient would download it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import obstore
import orjson
import pytest
from obstore.store import S3Store
from pyrage import x25519

from kbaudit.services.delivery.outbox import deliver_due
from tests.backends import customer_bucket
from tests.conftest import Api
from tests.helpers import DEMO_WINDOW, EXPORTS, download_all, seed_demo, start_export, view_export
from tests.receiver import rebinding, receiving

pytestmark = pytest.mark.scaleout
DESTINATIONS = "/v1/knowledge-base/audit/destinations"


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api(webhook_allow_private=True, export_rows_per_file=20)


def body(**changes: Any) -> dict[str, Any]:
    endpoint, bucket, key_id, secret = customer_bucket()
    return {
        "type": "s3",
        "bucket": bucket,
        "prefix": f"audits/{uuid.uuid4().hex[:8]}",
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key_id": key_id,
        "secret_access_key": secret,
        **changes,
    }


def customer_store(prefix: str) -> S3Store:
    endpoint, bucket, key_id, secret = customer_bucket()
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint,
        region="us-east-1",
        access_key_id=key_id,
        secret_access_key=secret,
        client_options={"allow_http": True},
    )


def test_a_good_bucket_is_saved_and_listed_without_its_secret(api: Api) -> None:
    key = api.key()
    sent = body()
    response = api.client.put(f"{DESTINATIONS}/audit-bucket", json=sent, headers=key)
    assert response.status_code == 200, response.text
    assert sent["secret_access_key"] not in response.text
    listed = api.client.get(DESTINATIONS, headers=key)
    assert [d["name"] for d in listed.json()] == ["audit-bucket"]
    assert sent["secret_access_key"] not in listed.text
    assert "secret_access_key" not in listed.json()[0]
    # The probe object is gone again.
    assert list(obstore.list(customer_store(sent["prefix"]))) == []
    assert api.client.get(DESTINATIONS, headers=api.key("other-org")).json() == []
    assert api.client.delete(f"{DESTINATIONS}/audit-bucket", headers=key).status_code == 204
    assert api.client.get(DESTINATIONS, headers=key).json() == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"secret_access_key": "wrong-secret"}, "put: SignatureDoesNotMatch"),
        ({"access_key_id": "nobody"}, "put: InvalidAccessKeyId"),
        ({"bucket": "no-such-bucket"}, "put: AccessDenied"),
    ],
)
def test_a_bucket_kbaudit_cannot_use_is_refused_with_the_stores_reason(
    api: Api, changes: dict[str, str], reason: str
) -> None:
    key = api.key()
    sent = body(**changes)
    response = api.client.put(f"{DESTINATIONS}/audit-bucket", json=sent, headers=key)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "destination_check_failed"
    assert reason in answer["message"]
    assert sent["secret_access_key"] not in response.text
    assert api.client.get(DESTINATIONS, headers=key).json() == []


def test_a_secret_is_never_echoed_in_a_refusal(api: Api) -> None:
    sent = body(bucket="Not_A_Bucket", secret_access_key="s3cr3t-value-\u00e9")
    response = api.client.put(f"{DESTINATIONS}/x", json=sent, headers=api.key())
    assert response.status_code == 422
    assert "s3cr3t-value" not in response.text


def test_a_private_endpoint_is_refused_unless_allowed(make_api: Callable[..., Api]) -> None:
    strict = make_api()
    response = strict.client.put(f"{DESTINATIONS}/x", json=body(), headers=strict.key())
    assert response.status_code == 422
    assert "https" in response.text


def test_a_bucket_is_reached_at_the_address_its_check_saw(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint's name is resolved once, by the check; the store's client never looks it
    up (it could not: only the check's resolver knows it), and signs for the name."""
    port = urlsplit(customer_bucket()[0]).port
    answers = rebinding(monkeypatch, "bucket.rebinding.test", "127.0.0.1", "127.0.0.2")
    sent = body(endpoint=f"http://bucket.rebinding.test:{port}")
    response = api.client.put(f"{DESTINATIONS}/rebound", json=sent, headers=api.key())
    assert response.status_code == 200, response.text
    assert answers == ["127.0.0.1"]


def test_an_export_arrives_in_the_bucket_as_downloaded(api: Api) -> None:
    key = api.key()
    sent = body()
    assert api.client.put(f"{DESTINATIONS}/audit", json=sent, headers=key).status_code == 200
    seed_demo(api, key, 50)
    with receiving([200, 200]) as receiver:
        api.client.post(
            "/v1/knowledge-base/audit/webhooks",
            json={"url": receiver.url, "events": ["export.succeeded", "export.delivered"]},
            headers=key,
        )
        job_id = start_export(api, key, export_format="ndjson", destination="audit")["id"]
        assert view_export(api, key, job_id)["delivery"] == {
            "destination": "audit",
            "status": "pending",
            "error": None,
        }
        deliver_due(api.container.delivery)  # the copy
        deliver_due(api.container.delivery)  # the event it made
    job = view_export(api, key, job_id)
    assert job["delivery"]["status"] == "delivered"
    store = customer_store(f"{sent['prefix']}/{job_id}")
    downloaded = download_all(api, key, job_id, manifest=True)
    assert len(downloaded) == 5  # three data files, the manifest and its signature
    for name, content in downloaded:
        assert bytes(obstore.get(store, name).bytes()) == content
    ended, delivered = [orjson.loads(r.body) for r in receiver.received]
    # The copy was queued before the export's own event was written: it says so.
    assert ended["type"] == "export.succeeded"
    assert ended["data"]["delivery"] == {"destination": "audit", "status": "pending", "error": None}
    assert delivered["type"] == "export.delivered"
    assert delivered["data"]["delivery"]["status"] == "delivered"


def test_an_age_export_arrives_as_age_files(api: Api) -> None:
    key = api.key()
    sent = body()
    api.client.put(f"{DESTINATIONS}/audit", json=sent, headers=key)
    seed_demo(api, key, 10)
    identity = x25519.Identity.generate()
    job_id = start_export(api, key, destination="audit", recipients=[str(identity.to_public())])[
        "id"
    ]
    deliver_due(api.container.delivery)
    job = view_export(api, key, job_id)
    store = customer_store(f"{sent['prefix']}/{job_id}")
    name = job["files"][0]["name"]
    assert name.endswith(".csv.age")
    copied = bytes(obstore.get(store, name).bytes())
    assert hashlib.sha256(copied).hexdigest() == job["files"][0]["sha256_delivered"]


def test_a_copy_that_cannot_be_made_fails_and_says_why(api: Api) -> None:
    key = api.key()
    api.client.put(f"{DESTINATIONS}/audit", json=body(), headers=key)
    seed_demo(api, key, 5)
    job_id = start_export(api, key, destination="audit")["id"]
    api.client.delete(f"{DESTINATIONS}/audit", headers=key)
    deliver_due(api.container.delivery)
    delivery = view_export(api, key, job_id)["delivery"]
    assert delivery["status"] == "failed"
    assert "removed" in delivery["error"]


def test_an_unknown_destination_is_refused_before_the_export(api: Api) -> None:
    key = api.key()
    response = api.client.post(EXPORTS, json={**DEMO_WINDOW, "destination": "nowhere"}, headers=key)
    assert response.status_code == 422
    assert "nowhere" in response.text
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []
