"""Parquet renderings of exported records: one typed schema, fixed here, and a rendering that
streams row groups.

The stored documents are canonical JSON (``kbaudit.document``); Arrow's JSON reader turns them
into columns in C++, about twice as fast as parsing them in Python and building the columns
from dicts (100k records: 1.4 s against 2.9 s to parse alone). The count maps are the one
kind of value Arrow cannot read as a string, so each is first rewritten, in the document's
bytes, into a JSON string holding its own canonical JSON.
"""

from __future__ import annotations

import functools
import io
import re

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"
# A row group is held in memory as Arrow columns until it is written (pyarrow cannot grow
# one batch by batch): 100k rows took 130 MB of them and a worker's peak RSS went to 612 MB;
# at 50k, 420 MB (a CSV worker: 233 MB).
ROW_GROUP_ROWS = 50_000
# Documents parsed at a time: Arrow's reader is as quick on 2k as on 10k, and its scratch
# memory is a fifth.
PARSE_ROWS = 2_000
# The same bounds in bytes of documents, for records of megabytes: 300 records of 1.7 MB
# (bench/hostile.py) peaked at 370 MB with row groups of 32 MiB, 340 MB at 8 (pyarrow alone
# holds some 80 MB), and with the heap's large blocks given back (kbaudit.runtime) at 8 MiB
# 293 MB, at 16 MiB 301 MB; typical records (about 1.2 KB) are cut at about 7k rows.
ROW_GROUP_BYTES = 8 * 1024 * 1024
PARSE_BYTES = 2 * 1024 * 1024

_TIME = pa.timestamp("us", tz="UTC")
_COUNT = pa.int32()
_TEXT = pa.string()

SCOPE_TYPE = pa.struct(
    [
        ("knowledge_base_id", _TEXT),
        ("requested", pa.bool_()),
        ("eligible_version_count", _COUNT),
        ("result_count", _COUNT),
        ("serving_decision", _TEXT),
        ("scan_policy_decision", _TEXT),
        ("effective_serving_status_counts", _TEXT),  # JSON
    ]
)
REF_TYPE = pa.struct(
    [
        ("knowledge_base_id", _TEXT),
        ("document_id", _TEXT),
        ("document_version_id", _TEXT),
        ("chunk_id", _TEXT),
        ("chunk_index", _COUNT),
        ("chunk_stable_id", _TEXT),
        ("chunk_content_hash", _TEXT),
        ("chunk_content_hash_key_version", _TEXT),
        ("document_version_content_hash", _TEXT),
        ("citation_ref", _TEXT),
        ("source_uri_hash", _TEXT),
        ("rank", _COUNT),
        ("score", pa.float64()),
    ]
)
# The detail view's fields in the CSV's order, then the scopes and refs. A field added to
# records must be added here too: tests/unit/test_record_fields.py fails until it is.
SCHEMA = pa.schema(
    [
        ("ref", _TEXT),
        ("id", _TEXT),
        ("created_at", _TIME),
        ("retrieval_status", _TEXT),
        ("serving_decision", _TEXT),
        ("audit_write_status", _TEXT),
        ("requested_kb_count", _COUNT),
        ("result_count", _COUNT),
        ("response_ref_count", _COUNT),
        ("eligible_version_count", _COUNT),
        ("duration_ms", _COUNT),
        ("actor_user_id", _TEXT),
        ("session_id", _TEXT),
        ("agent_id", _TEXT),
        ("rag_query_id", _TEXT),
        ("query_hash", _TEXT),
        ("query_hash_key_version", _TEXT),
        ("query_length_bucket", _TEXT),
        ("request_id", _TEXT),
        ("trace_id", _TEXT),
        ("caller", _TEXT),
        ("initiator_type", _TEXT),
        ("principal_type", _TEXT),
        ("permission", _TEXT),
        ("permission_decision", _TEXT),
        ("query_hash_scope", _TEXT),
        ("query_length", _COUNT),
        ("eligible_version_digest", _TEXT),
        ("ineligible_counts_by_reason", _TEXT),  # JSON
        ("policy_version", _TEXT),
        ("eligibility_rule_version", _TEXT),
        ("scan_policy_version", _TEXT),
        ("scan_policy_decision", _TEXT),
        ("retrieval_config_version", _TEXT),
        ("embedding_model", _TEXT),
        ("reranker_model", _TEXT),
        ("top_k", _COUNT),
        ("effective_limit", _COUNT),
        ("ranking_mode", _TEXT),
        ("alpha", pa.float64()),
        ("reranked", pa.bool_()),
        ("error_code", _TEXT),
        ("error_category", _TEXT),
        ("intent_recorded_at", _TIME),
        ("finalized_at", _TIME),
        ("scopes", pa.list_(SCOPE_TYPE)),
        ("refs", pa.list_(REF_TYPE)),
    ],
    metadata={"kbaudit.schema_version": SCHEMA_VERSION},
)
JSON_FIELDS = ("ineligible_counts_by_reason", "effective_serving_status_counts")

# A count map in a canonical document: string keys (escapes included) and integer values,
# nothing nested, so this names it exactly.
_COUNT_MAP = re.compile(
    rb'"(ineligible_counts_by_reason|effective_serving_status_counts)":'
    rb'(\{(?:"(?:[^"\\]|\\.)*":-?[0-9]+,?)*\})'
)
# Only maps this small are remembered: a writer may send maps of 64 names of 64 characters
# each, all different, and 1,024 of those (up to 25 MB as escapes) would stay held.
CACHED_MAP_BYTES = 512
_READ = pa_json.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="error")
_THREADS = pa_json.ReadOptions(use_threads=True)
# Memory freed is given back: Arrow's default pool (mimalloc) kept a row group's worth for
# good, and a worker writes one part after another.
_MEMORY = pa.system_memory_pool()


def _as_json_string(match: re.Match[bytes]) -> bytes:
    field = match[0]
    return _quoted(field) if len(field) <= CACHED_MAP_BYTES else _quote(field)


@functools.lru_cache(maxsize=1024)
def _quoted(field: bytes) -> bytes:
    """``_quote``, remembered: most records share a few maps, and a cache of them took a
    quarter off the rewrite."""
    return _quote(field)


def _quote(field: bytes) -> bytes:
    """``"name":{...}`` as ``"name":"{...}"``."""
    name, _, counts = field.partition(b":")
    return name + b':"' + counts.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def table_of(lines: bytes) -> pa.Table:
    """Documents, one a line, as a table of ``SCHEMA``."""
    lines = _COUNT_MAP.sub(_as_json_string, lines)
    try:
        return _read(lines, _THREADS)
    except pa.ArrowInvalid as exc:
        if "straddling" not in str(exc):
            raise
    # A document longer than Arrow's block (1 MiB): read them in one block.
    return _read(lines, pa_json.ReadOptions(use_threads=False, block_size=len(lines) + 1))


def _read(lines: bytes, options: pa_json.ReadOptions) -> pa.Table:
    return pa_json.read_json(
        io.BytesIO(lines), read_options=options, parse_options=_READ, memory_pool=_MEMORY
    )


class _Drain:
    """The file the Parquet writer writes to: it keeps what was written until it is taken,
    while ``tell`` goes on counting it all (the footer records offsets into the file)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        taken = b"".join(self._chunks)
        self._chunks.clear()
        return taken


class ParquetRendering:
    """One Parquet file: documents are parsed ``PARSE_ROWS`` at a time and written out a row
    group of ``ROW_GROUP_ROWS`` at a time, so at most one row group is held in memory."""

    def __init__(self) -> None:
        self._file = _Drain()
        self._writer = pq.ParquetWriter(
            pa.PythonFile(self._file, mode="w"),
            SCHEMA,
            compression="zstd",
            memory_pool=_MEMORY,
            write_statistics=["created_at", "retrieval_status", "actor_user_id", "session_id"],
        )
        self._unparsed: list[bytes] = []  # batches of lines
        self._unparsed_rows = self._unparsed_bytes = 0
        self._parsed: list[pa.Table] = []
        self._parsed_rows = self._parsed_bytes = 0

    def start(self) -> bytes:
        return self._file.take()  # the magic bytes

    def render(self, lines: bytes) -> bytes:
        self._unparsed.append(lines)
        self._unparsed_rows += lines.count(b"\n")
        self._unparsed_bytes += len(lines)
        if self._unparsed_rows >= PARSE_ROWS or self._unparsed_bytes >= PARSE_BYTES:
            self._parse()
        if self._parsed_rows >= ROW_GROUP_ROWS or self._parsed_bytes >= ROW_GROUP_BYTES:
            self._write_row_group()
        return self._file.take()

    def finish(self) -> bytes:
        self._parse()
        self._write_row_group()
        self._writer.close()
        return self._file.take()

    def _parse(self) -> None:
        if self._unparsed:
            table = table_of(b"".join(self._unparsed))
            self._parsed_bytes += self._unparsed_bytes
            self._unparsed, self._unparsed_rows, self._unparsed_bytes = [], 0, 0
            self._parsed.append(table)
            self._parsed_rows += table.num_rows

    def _write_row_group(self) -> None:
        if self._parsed:
            self._writer.write_table(pa.concat_tables(self._parsed), row_group_size=ROW_GROUP_ROWS)
            self._parsed, self._parsed_rows, self._parsed_bytes = [], 0, 0
