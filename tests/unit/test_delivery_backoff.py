"""Retries of webhook events and copies back off exponentially, with jitter, up to an hour."""

from __future__ import annotations

from kbaudit.services.delivery.outbox import next_wait


def test_waits_double_with_jitter_and_stop_growing_at_the_longest() -> None:
    for attempts in range(1, 30):
        step = min(3600.0, 5.0 * 2 ** (attempts - 1))
        waits = {next_wait(5.0, 3600.0, attempts) for _ in range(50)}
        assert all(step / 2 <= wait <= step for wait in waits)
        assert len(waits) > 1  # jittered: not every sender comes back at once
