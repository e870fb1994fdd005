"""Settings that would quietly do the wrong thing are refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kbaudit.config import Settings


def test_an_empty_master_key_is_refused_not_taken_for_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBAUDIT_MASTER_KEY", "")
    with pytest.raises(ValidationError, match="master_key"):
        Settings()


def test_a_master_key_given_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBAUDIT_MASTER_KEY", "1:c2VjcmV0")
    settings = Settings()
    assert settings.master_key is not None
    assert "c2VjcmV0" not in repr(settings)
