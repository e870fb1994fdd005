"""The one strict reading of client input: whole numbers, NUL escapes, JSON numbers."""

from __future__ import annotations

import json

import pytest

from kbaudit.decoding import JsonRefused, check_json, strict_loads, whole_number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),  # past a signed 64-bit column
        ("9" * 5000, None),
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("\u00b2", None),  # str.isdigit() says yes, int() says no
        ("\u0663", None),  # an Arabic-Indic three: int() reads it
        ("\uff11", None),  # a fullwidth one
    ],
)
def test_whole_numbers_are_ascii_digits_within_a_column(text: str, value: int | None) -> None:
    assert whole_number(text) == value


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (rb'{"a":"x\u0000"}', "nul"),
        (rb'{"a":"\\\u0000"}', "nul"),  # an escaped backslash, then a NUL escape
        (rb'{"a":1,"a":2}', "duplicate_key"),
        (rb'{"a":NaN}', "number"),
        (rb'{"a":-Infinity}', "number"),
        (rb'{"a":1e999}', "number"),
        (rb'{"a":9223372036854775808}', "number"),
        (rb'{"a":-9223372036854775808}', "number"),
    ],
)
def test_what_json_allows_but_no_column_holds_is_refused(body: bytes, kind: str) -> None:
    for reading in (strict_loads, check_json):
        with pytest.raises(JsonRefused) as refused:
            reading(body)
        assert refused.value.kind == kind


def test_text_that_only_looks_like_a_nul_escape_is_kept() -> None:
    assert strict_loads(rb'{"a":"\\u0000","b":"u0000"}') == {"a": "\\u0000", "b": "u0000"}
    assert strict_loads(b'{"n":-9223372036854775807,"f":1.5e300}')["f"] == 1.5e300


def test_malformed_json_is_still_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError) as raised:
        check_json(b'{"a":')
    assert not isinstance(raised.value, JsonRefused)
