"""The one strict reading of what clients send: JSON bodies, whole numbers in text, NUL.

Every edge reads its input through these, so that a class of bad input is refused once, at
the root, with the same words: a key given twice, NaN, Infinity, numbers no column holds, and
NUL characters (PostgreSQL refuses them in text; SQLite keeps them, so data would not move
from the embedded mode to PostgreSQL).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

LARGEST_INTEGER = 2**63 - 1  # a signed 64-bit column, in both engines
LARGEST_DIGITS = 19
_NUL_ESCAPE = b"u0000"
_BACKSLASH = 0x5C


class JsonRefused(json.JSONDecodeError):
    """Well-formed JSON that kbaudit refuses; ``kind`` names the rule it broke."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message, "", 0)
        self.kind = kind


def strict_loads(body: bytes) -> Any:
    """The body's JSON value, refusing what ``JsonRefused`` lists; malformed JSON raises
    ``json.JSONDecodeError`` and text that is not UTF-8 ``UnicodeDecodeError``."""
    return _loads(body, _unique)


def check_json(body: bytes) -> None:
    """``strict_loads``' checks without keeping the value: every object is dropped as soon
    as its keys are checked, so that memory follows the body's size, not what it holds (a
    body of 32 MiB of ``{}`` held 1 GB as Python objects)."""
    _loads(body, _unique_then_drop)


def _loads(body: bytes, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any]) -> Any:
    refuse_nul_escapes(body)
    return json.loads(
        body,
        object_pairs_hook=object_pairs_hook,
        parse_int=_integer,
        parse_float=_finite,
        parse_constant=_no_constant,
    )


def refuse_nul_escapes(body: bytes) -> None:
    """Refuse ``\\u0000`` in JSON text. A raw NUL byte is not JSON at all; an escaped
    backslash followed by ``u0000`` (``\\\\u0000``) is six characters of text, not a NUL."""
    at = body.find(_NUL_ESCAPE)
    while at != -1:
        backslashes = 0
        while at - backslashes > 0 and body[at - backslashes - 1] == _BACKSLASH:
            backslashes += 1
        if backslashes % 2 == 1:
            raise JsonRefused("nul", "strings may not contain NUL characters")
        at = body.find(_NUL_ESCAPE, at + len(_NUL_ESCAPE))


def whole_number(text: str, largest: int = LARGEST_INTEGER) -> int | None:
    """``text`` as a non-negative integer if it is ASCII digits only and at most ``largest``;
    else None. ``str.isdigit`` takes digits ``int`` refuses (``²``) and ``int`` takes digits
    of every script (``٣``) and any length: neither may decide alone."""
    if not text or len(text) > LARGEST_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= largest else None


def has_nul(text: str) -> bool:
    return "\x00" in text


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        message = f"the key {_repeated(pairs)!r} appears twice in one object"
        raise JsonRefused("duplicate_key", message)
    return found


def _unique_then_drop(pairs: list[tuple[str, Any]]) -> None:
    _unique(pairs)


def _repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key[:64]
        seen.add(key)
    return ""


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > LARGEST_DIGITS or abs(value := int(text)) > LARGEST_INTEGER:
        raise JsonRefused("number", f"integers must lie within ±{LARGEST_INTEGER}")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("number", f"the number {text[:32]} is too large to hold")
    return value


def _no_constant(name: str) -> None:
    raise JsonRefused("number", f"{name} is not a number JSON allows")
