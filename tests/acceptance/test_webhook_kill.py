"""An export event survives a SIGKILL of the server between the job's end and the event's
delivery: it is in the outbox, written by the transaction that ended the job, and the next
server sends it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2
import orjson

from tests.acceptance.conftest import RECENT_WINDOW, Cli, Serve, recent_record
from tests.helpers import EXPORTS, RECORDS
from tests.receiver import receiving, signed_by


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.1)


def test_an_event_left_by_a_killed_server_is_sent_by_the_next(
    cli: Cli, serve: Callable[..., Serve]
) -> None:
    # The first server works the outbox once an hour: the event waits there when it dies.
    cli.env |= {
        "KBAUDIT_WEBHOOK_ALLOW_PRIVATE": "true",
        "KBAUDIT_DELIVERY_INTERVAL_SECONDS": "3600",
    }
    first = serve()
    key = {
        "x-api-key": cli.key("acme", "kb_audit:read,kb_audit:write,kb_audit:export,kb_audit:admin")
    }
    items = [recent_record() for _ in range(3)]
    assert (
        httpx2.post(f"{first.url}{RECORDS}", json={"items": items}, headers=key).status_code == 200
    )
    with receiving([200]) as receiver:
        hook = httpx2.post(
            f"{first.url}/v1/knowledge-base/audit/webhooks", json={"url": receiver.url}, headers=key
        ).json()
        job = httpx2.post(f"{first.url}{EXPORTS}", json=RECENT_WINDOW, headers=key).json()

        def ended() -> bool:
            view = httpx2.get(f"{first.url}{EXPORTS}/{job['id']}", headers=key).json()
            return bool(view["status"] == "succeeded")

        wait_for(ended, 60, "the export to end")
        assert cli.query("SELECT status FROM outbox") == [("pending",)]
        first.kill()
        assert receiver.received == []

        cli.env["KBAUDIT_DELIVERY_INTERVAL_SECONDS"] = "0.5"
        serve()
        wait_for(lambda: len(receiver.received) >= 1, 30, "the event")
        wait_for(lambda: cli.query("SELECT status FROM outbox") == [("delivered",)], 10, "its row")
    [received] = receiver.received
    event = orjson.loads(received.body)
    assert (event["type"], event["data"]["id"]) == ("export.succeeded", job["id"])
    assert received.headers["webhook-id"].startswith("msg_")
    assert signed_by(hook["secret"], received)
