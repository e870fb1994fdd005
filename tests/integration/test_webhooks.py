"""Webhooks: signed per Standard Webhooks, sent at least once from the outbox to real HTTP
receivers on 127.0.0.1, retried with backoff, never redirected, never to private addresses
unless allowed."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from kbaudit.services.delivery.outbox import Outbox, deliver_due
from kbaudit.services.exports.sweep import sweep
from tests.conftest import Api, ManualClock
from tests.helpers import seed_demo, start_export
from tests.receiver import HUGE, rebinding, receiving, signed_by

HOOKS = "/v1/knowledge-base/audit/webhooks"


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api(webhook_allow_private=True)


def register(api: Api, key: dict[str, str], url: str, **body: Any) -> dict[str, Any]:
    response = api.client.post(HOOKS, json={"url": url, **body}, headers=key)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(api: Api, key: dict[str, str], hook_id: str) -> list[dict[str, Any]]:
    response = api.client.get(f"{HOOKS}/{hook_id}/deliveries", headers=key)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def exported(api: Api, key: dict[str, str]) -> str:
    seed_demo(api, key, 5)
    job_id: str = start_export(api, key)["id"]
    return job_id


def test_a_webhook_is_listed_without_its_secret_and_removed(api: Api) -> None:
    key, other = api.key(), api.key("other-org")
    hook = register(api, key, "http://127.0.0.1:9/hook", description="audit team")
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) == 32
    assert hook["events"] == [
        "export.succeeded",
        "export.partial",
        "export.failed",
        "export.expired",
        "export.delivered",
        "export.delivery_failed",
    ]
    listed = api.client.get(HOOKS, headers=key).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert hook["secret"].removeprefix("whsec_") not in api.client.get(HOOKS, headers=key).text
    assert api.client.get(HOOKS, headers=other).json() == []
    assert api.client.delete(f"{HOOKS}/{hook['id']}", headers=other).status_code == 404
    assert api.client.get(f"{HOOKS}/{hook['id']}/deliveries", headers=other).status_code == 404
    assert api.client.delete(f"{HOOKS}/{hook['id']}", headers=key).status_code == 204
    assert api.client.get(HOOKS, headers=key).json() == []


def test_the_secret_is_kept_only_wrapped(api: Api) -> None:
    hook = register(api, api.key(), "http://127.0.0.1:9/hook")
    raw = base64.b64decode(hook["secret"].removeprefix("whsec_"))
    with api.container.store.reading() as uow:
        org = uow.keys.organization_by_name("acme")
        assert org is not None
        stored = uow.delivery.webhook(org.id, hook["id"])
    assert stored is not None
    assert raw not in stored.wrapped_secret


def test_an_ended_export_is_sent_signed_without_download_tokens(api: Api) -> None:
    key = api.key()
    with receiving([200]) as receiver:
        hook = register(api, key, receiver.url)
        job_id = exported(api, key)
        assert deliver_due(api.container.delivery) == 1
    [received] = receiver.received
    assert signed_by(hook["secret"], received)
    event = orjson.loads(received.body)
    assert event["type"] == "export.succeeded"
    assert event["data"]["id"] == job_id
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["files"]
    assert all(file["download_token"] is None for file in event["data"]["files"])
    [delivery] = deliveries(api, key, hook["id"])
    assert delivery["id"] == received.headers["webhook-id"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert deliver_due(api.container.delivery) == 0  # sent once


def test_a_receiver_that_fails_twice_gets_the_same_event_a_third_time(
    api: Api, clock: ManualClock
) -> None:
    key = api.key()
    with receiving([500, 503, 204]) as receiver:
        hook = register(api, key, receiver.url)
        exported(api, key)
        deliver_due(api.container.delivery)
        [pending] = deliveries(api, key, hook["id"])
        assert pending["status"] == "pending"
        assert pending["last_status_code"] == 500
        assert datetime.fromisoformat(pending["next_attempt_at"]) > clock.now
        assert deliver_due(api.container.delivery) == 0  # not due yet
        for _ in range(2):
            clock.now += timedelta(hours=1)
            assert deliver_due(api.container.delivery) == 1
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    assert all(signed_by(hook["secret"], r) for r in receiver.received)
    [delivered] = deliveries(api, key, hook["id"])
    assert delivered["status"] == "delivered"
    assert delivered["attempts"] == 3
    assert delivered["last_status_code"] == 204


def test_a_receiver_that_does_not_answer_in_time_is_tried_again(api: Api) -> None:
    key = api.key()
    delivery = api.container.delivery
    delivery.config = replace(delivery.config, timeout_seconds=0.5)
    with receiving(["slow"], slow_seconds=2) as receiver:
        hook = register(api, key, receiver.url)
        exported(api, key)
        deliver_due(delivery)
    [pending] = deliveries(api, key, hook["id"])
    assert pending["status"] == "pending"
    assert pending["last_error"] == "the receiver took more than 0.5 s to answer"
    assert pending["last_status_code"] is None


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_timeout(api: Api) -> None:
    """A byte every 0.2 s is inside every read's timeout; the attempt as a whole is not."""
    key = api.key()
    delivery = api.container.delivery
    delivery.config = replace(delivery.config, timeout_seconds=1.0)
    with receiving(["drip"]) as receiver:
        hook = register(api, key, receiver.url)
        exported(api, key)
        started = time.monotonic()
        deliver_due(delivery)
        took = time.monotonic() - started
    [pending] = deliveries(api, key, hook["id"])
    assert pending["status"] == "pending"
    assert pending["last_error"] == "the receiver took more than 1 s to answer"
    assert took < 5, took


def test_a_receivers_answer_is_not_read_past_its_status(api: Api) -> None:
    key = api.key()
    with receiving(["huge"]) as receiver:
        hook = register(api, key, receiver.url)
        exported(api, key)
        deliver_due(api.container.delivery)
        [delivered] = deliveries(api, key, hook["id"])
        time.sleep(0.5)  # the receiver writes until the closed connection stops it
        assert receiver.sent < HUGE / 10, receiver.sent
    assert delivered["status"] == "delivered"
    assert delivered["last_status_code"] == 200


def test_one_organizations_slow_receivers_do_not_hold_back_anothers(api: Api) -> None:
    """Ten slow webhooks of one organization would fill every sender for a second; another
    organization's event goes out at once, and the slow ones all arrive in the end."""
    slow_org, fast_org = api.key("slow"), api.key("fast")
    fast_at = None
    with receiving(["slow"], slow_seconds=1) as slow, receiving([200]) as fast:
        slow_hooks = [register(api, slow_org, slow.url) for _ in range(10)]
        exported(api, slow_org)
        fast_hook = register(api, fast_org, fast.url)
        exported(api, fast_org)
        with Outbox(api.container.delivery) as outbox:
            started = time.monotonic()
            while time.monotonic() - started < 30 and len(slow.received) < 10:
                outbox.send_due()
                if fast.received and fast_at is None:
                    fast_at = time.monotonic() - started
                time.sleep(0.05)
    assert fast_at is not None
    assert fast_at < 0.5, fast_at
    assert deliveries(api, fast_org, fast_hook["id"])[0]["status"] == "delivered"
    for hook in slow_hooks:
        assert deliveries(api, slow_org, hook["id"])[0]["status"] == "delivered"


def test_events_are_sent_side_by_side(api: Api) -> None:
    """Each receiver answers only once the other's request has arrived too: sent one after
    the other, the first would give up waiting and answer 500."""
    key = api.key()
    both = threading.Barrier(2)
    with receiving([both]) as first, receiving([both]) as second:
        hooks = [register(api, key, receiver.url) for receiver in (first, second)]
        exported(api, key)
        assert deliver_due(api.container.delivery) == 2
    for hook in hooks:
        assert deliveries(api, key, hook["id"])[0]["status"] == "delivered"


def test_redirects_are_not_followed(api: Api) -> None:
    key = api.key()
    with receiving([200]) as target, receiving([f"redirect:{target.url}"]) as redirecting:
        hook = register(api, key, redirecting.url)
        exported(api, key)
        deliver_due(api.container.delivery)
    assert len(redirecting.received) == 1
    assert target.received == []
    [pending] = deliveries(api, key, hook["id"])
    assert pending["status"] == "pending"
    assert pending["last_status_code"] == 302
    assert "redirects are not followed" in pending["last_error"]


def test_only_the_events_asked_for_are_sent(api: Api) -> None:
    key = api.key()
    hook = register(api, key, "http://127.0.0.1:9/hook", events=["export.failed"])
    exported(api, key)
    assert deliveries(api, key, hook["id"]) == []


def test_an_event_is_given_up_after_more_than_a_day(api: Api, clock: ManualClock) -> None:
    key = api.key()
    started = clock.now
    with receiving([500]) as receiver:
        hook = register(api, key, receiver.url)
        exported(api, key)
        for _ in range(60):
            deliver_due(api.container.delivery)
            if deliveries(api, key, hook["id"])[0]["status"] != "pending":
                break
            clock.now += timedelta(minutes=45)
    [failed] = deliveries(api, key, hook["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == len(receiver.received) > 6
    assert datetime.fromisoformat(failed["ended_at"]) - started >= timedelta(hours=24)


def test_an_expired_export_is_announced(api: Api, clock: ManualClock) -> None:
    key = api.key()
    with receiving([200]) as receiver:
        register(api, key, receiver.url, events=["export.expired"])
        job_id = exported(api, key)
        clock.now += timedelta(hours=api.container.settings.export_ttl_hours, seconds=1)
        sweep(api.container.exports)
        deliver_due(api.container.delivery)
    [received] = receiver.received
    event = orjson.loads(received.body)
    assert (event["type"], event["data"]["id"], event["data"]["status"]) == (
        "export.expired",
        job_id,
        "expired",
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "must use https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("ftp://example.com/hook", "https"),
    ],
)
def test_private_and_plain_http_urls_are_refused(
    make_api: Callable[..., Api], url: str, why: str
) -> None:
    api = make_api()  # private addresses not allowed
    key = api.key()
    response = api.client.post(HOOKS, json={"url": url}, headers=key)
    assert response.status_code == 422, response.text
    assert why in response.json()["detail"][0]["msg"]
    assert api.client.get(HOOKS, headers=key).json() == []


def test_the_address_is_checked_again_when_sending(api: Api) -> None:
    key = api.key()
    with receiving([200]) as receiver:
        hook = register(api, key, receiver.url)
        exported(api, key)
        delivery = api.container.delivery
        delivery.config = replace(delivery.config, allow_private=False)
        deliver_due(delivery)
    assert receiver.received == []
    [pending] = deliveries(api, key, hook["id"])
    assert "refused" in pending["last_error"]


def test_a_send_connects_to_the_address_its_check_saw(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name answers one address to the check and another to any later lookup: the
    request still goes to the one checked, with the name as its Host."""
    key = api.key()
    with (
        receiving([200]) as checked,
        receiving([200], host="127.0.0.2", port=checked.port) as rebound,
    ):
        answers = rebinding(monkeypatch, "hooks.rebinding.test", "127.0.0.1", "127.0.0.2")
        register(api, key, f"http://hooks.rebinding.test:{checked.port}/hook")
        exported(api, key)
        deliver_due(api.container.delivery)
    assert answers == ["127.0.0.1"]  # the check's lookup, and no other
    [received] = checked.received
    assert received.headers["host"] == f"hooks.rebinding.test:{checked.port}"
    assert rebound.received == []


def test_unknown_events_are_refused(api: Api) -> None:
    response = api.client.post(
        HOOKS, json={"url": "http://127.0.0.1:9/", "events": ["export.done"]}, headers=api.key()
    )
    assert response.status_code == 422


def test_reading_webhooks_needs_the_admin_scope(api: Api) -> None:
    reader = api.key(scopes=("kb_audit:read", "kb_audit:export"))
    assert api.client.get(HOOKS, headers=reader).status_code == 403
    assert (
        api.client.post(HOOKS, json={"url": "http://127.0.0.1:9/"}, headers=reader).status_code
        == 403
    )
