"""Reading a one-column binary COPY: a row a message, or rows packed together."""

from __future__ import annotations

import pytest

from kbaudit.store.postgres.copy import binary_values

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"


def row(value: bytes) -> bytes:
    return b"\x00\x01" + len(value).to_bytes(4, "big") + value


VALUES = [b'{"a":"\\\\"}', b"", "é\n".encode(), b"x" * 70_000]


def test_a_row_a_message_as_the_server_sends_them() -> None:
    messages = [HEADER + row(VALUES[0]), *map(row, VALUES[1:]), TRAILER]
    assert [bytes(value) for value in binary_values(messages)] == VALUES


def test_rows_packed_into_messages_and_a_header_extension() -> None:
    extended = HEADER[:15] + (3).to_bytes(4, "big") + b"ext"
    messages = [
        extended,
        row(VALUES[0]) + row(VALUES[1]),
        row(VALUES[2]) + row(VALUES[3]) + TRAILER,
    ]
    assert [bytes(value) for value in binary_values(messages)] == VALUES


def test_output_that_is_not_binary_copy_is_refused() -> None:
    with pytest.raises(ValueError, match="signature"):
        list(binary_values([b'{"a":1}\n']))
