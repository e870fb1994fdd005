"""Wrong API keys are throttled per client address and per key id, never locking a key's
owner out, and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import SCOPES
from kbaudit.errors import AuthenticationRequired, TooManyAttempts
from kbaudit.services.keys import Authenticator, create_key
from kbaudit.services.throttle import MAX_TRACKED, FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_past_the_limit_waits_for_its_window_to_end() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.wait("a") is None
        throttle.failed("a")
    assert throttle.wait("a") == 60
    assert throttle.wait("b") is None
    clock.now += 59
    assert throttle.wait("a") == 1
    clock.now += 1
    assert throttle.wait("a") is None
    throttle.failed("a")
    assert throttle.wait("a") is None  # a new window, one failure in it


def test_made_up_names_cannot_fill_the_memory() -> None:
    throttle = FailureThrottle(limit=1, clock=Clock())
    for n in range(MAX_TRACKED * 3):
        throttle.failed(f"name {n}")
    assert throttle.tracked <= MAX_TRACKED


@pytest.fixture
def authenticator(tmp_path: Path) -> tuple[Authenticator, str, list[str]]:
    container = build_container(Settings(data_dir=tmp_path, queue_url="inline"))
    key = create_key(container.store, container.clock, "acme", SCOPES)
    heard: list[str] = []
    throttle = FailureThrottle(limit=5, window=60, clock=Clock())
    return Authenticator(container.store, throttle=throttle, on_refusal=heard.append), key, heard


def test_an_address_that_keeps_guessing_is_throttled(
    authenticator: tuple[Authenticator, str, list[str]],
) -> None:
    authenticate, key, heard = authenticator
    for n in range(5):
        with pytest.raises(AuthenticationRequired):
            authenticate(f"kba_guess{n}_secret", "10.0.0.9")
    with pytest.raises(TooManyAttempts) as throttled:
        authenticate(key, "10.0.0.9")  # even a good key, from that address
    assert throttled.value.retry_after == 60
    assert authenticate(key, "10.0.0.10").org_id  # other addresses are served
    assert heard == ["refused"] * 5 + ["throttled"]


def test_guesses_at_one_key_never_lock_its_owner_out(
    authenticator: tuple[Authenticator, str, list[str]],
) -> None:
    authenticate, key, heard = authenticator
    key_id = key.split("_")[1]
    for n in range(5):  # from five addresses, none of them throttled on its own
        with pytest.raises(AuthenticationRequired):
            authenticate(f"kba_{key_id}_wrong", f"10.0.1.{n}")
    with pytest.raises(TooManyAttempts):
        authenticate(f"kba_{key_id}_wrong", "10.0.2.1")
    assert authenticate(key, "10.0.2.1").org_id
    assert heard.count("throttled") == 1


def test_refusals_are_counted_in_the_metrics(tmp_path: Path) -> None:
    container = build_container(Settings(data_dir=tmp_path, queue_url="inline"))
    with pytest.raises(AuthenticationRequired):
        container.authenticate("kba_nobody_nothing", "10.0.0.1")
    value = container.metrics.registry.get_sample_value(
        "kbaudit_refused_keys_total", {"outcome": "refused"}
    )
    assert value == 1
