"""CSV rows read back, with Python's csv module, as exactly the cells they were made from."""

from __future__ import annotations

import csv
import io
import json
import uuid

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from kbaudit.document import document_of
from kbaudit.domain import RECORD_FIELDS, RecordIn
from kbaudit.services.exports.formats import FORMULA_STARTS, CsvFormat

free_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))


def expected_cell(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


@given(
    caller=free_text.map(lambda t: t[:128]),
    trace=free_text.map(lambda t: t[:128]),
    ref=st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True),
    alpha=st.floats(-2, 2, allow_nan=False),
    counts=st.sampled_from([None, {"a,b": 1}, {"stale": 2}]),
)
def test_free_text_survives_quoting_and_formulas_are_defused(
    caller: str, trace: str, ref: str, alpha: float, counts: dict[str, int] | None
) -> None:
    record = msgspec.convert(
        {
            "ref": ref,
            "id": str(uuid.uuid4()),
            "created_at": "2026-01-02T03:04:05Z",
            "caller": caller,
            "trace_id": trace,
            "reranked": False,
            "alpha": alpha,
            "ineligible_counts_by_reason": counts,
        },
        RecordIn,
    )
    text = CsvFormat().start() + CsvFormat().render(document_of(record).body.encode() + b"\n")
    header, row = list(csv.reader(io.StringIO(text.decode(), newline="")))
    cells = dict(zip(header, row, strict=True))
    assert header == list(RECORD_FIELDS)
    assert cells["ref"] == expected_cell(ref)
    assert cells["caller"] == expected_cell(caller)
    assert cells["trace_id"] == expected_cell(trace)
    assert (cells["reranked"], float(cells["alpha"]), cells["top_k"]) == ("false", alpha, "")
    expected_counts = "" if counts is None else json.dumps(counts, separators=(",", ":"))
    assert cells["ineligible_counts_by_reason"] == expected_counts
    assert cells["created_at"] == "2026-01-02T03:04:05.000000Z"
