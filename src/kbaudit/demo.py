"""Realistic sample records: the demo, the benchmarks and the tests draw from here.

Proportions follow what a busy deployment sees: most retrievals hit, some miss, a few are
blocked by policy or fail, and a small share is still waiting for its finalize write.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from kbaudit.domain import MAX_REFS_PER_RECORD, RecordIn, RefIn, ScopeIn

STATUS_WEIGHTS = (("hit", 70), ("miss", 18), ("blocked", 8), ("error", 4))


@dataclass(frozen=True)
class DemoWorld:
    """The fixed cast the records are drawn from: knowledge bases, people, sessions."""

    kb_ids: tuple[uuid.UUID, ...]
    actor_ids: tuple[uuid.UUID, ...]
    session_ids: tuple[uuid.UUID, ...]
    agent_ids: tuple[uuid.UUID, ...]

    @classmethod
    def build(cls, rng: random.Random) -> DemoWorld:
        def ids(n: int) -> tuple[uuid.UUID, ...]:
            return tuple(uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n))

        return cls(kb_ids=ids(6), actor_ids=ids(40), session_ids=ids(400), agent_ids=ids(5))


def demo_records(
    count: int, *, end: datetime, span: timedelta = timedelta(days=30), seed: int = 7
) -> Iterator[RecordIn]:
    """``count`` records spread over ``[end - span, end)``, the same for the same seed."""
    rng = random.Random(seed)
    world = DemoWorld.build(rng)
    statuses = [status for status, _ in STATUS_WEIGHTS]
    weights = [weight for _, weight in STATUS_WEIGHTS]
    start = end - span
    step = span / max(count, 1)
    for index in range(count):
        created_at = start + step * index + timedelta(microseconds=rng.randrange(1000))
        status = rng.choices(statuses, weights)[0]
        yield _record(rng, world, created_at, status)


def _record(rng: random.Random, world: DemoWorld, created_at: datetime, status: str) -> RecordIn:
    record_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    requested = rng.sample(world.kb_ids, rng.randint(1, 3))
    hit = status == "hit"
    refs = [_ref(rng, rng.choice(requested), rank) for rank in range(1, rng.randint(2, 5))]
    refs = refs if hit else []
    intent_only = rng.random() < 0.03
    return RecordIn(
        id=record_id,
        created_at=created_at,
        retrieval_status=status,  # type: ignore[arg-type]
        serving_decision={"blocked": "deny", "error": "error"}.get(status, "serve"),
        audit_write_status="intent_recorded" if intent_only else "finalized",
        requested_kb_count=len(requested),
        result_count=len(refs),
        response_ref_count=len(refs),
        eligible_version_count=rng.randint(1, 40),
        duration_ms=rng.randint(8, 900),
        actor_user_id=rng.choice(world.actor_ids),
        session_id=rng.choice(world.session_ids),
        agent_id=rng.choice(world.agent_ids),
        rag_query_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        query_hash=hashlib.sha256(record_id.bytes).hexdigest(),
        query_hash_key_version="qh-2026-01",
        query_length_bucket=rng.choice(("0-32", "33-128", "129-512")),
        request_id=f"req_{record_id.hex[:16]}",
        trace_id=record_id.hex,
        caller=rng.choice(("support-agent", "sales-assistant", "=cmd|' /C calc'!A0")),
        initiator_type=rng.choice(("user", "agent")),
        principal_type="user",
        permission="kb:read",
        permission_decision="deny" if status == "blocked" else "allow",
        query_hash_scope="org",
        query_length=rng.randint(3, 500),
        eligible_version_digest=hashlib.sha256(created_at.isoformat().encode()).hexdigest(),
        ineligible_counts_by_reason={"stale": rng.randint(0, 3), "restricted": rng.randint(0, 2)},
        policy_version="pol-12",
        eligibility_rule_version="elig-4",
        scan_policy_version="scan-2",
        scan_policy_decision="pass",
        retrieval_config_version="cfg-9",
        embedding_model="text-embed-3",
        reranker_model="rerank-2" if hit else None,
        top_k=8,
        effective_limit=8,
        ranking_mode="hybrid",
        alpha=0.5,
        reranked=hit,
        error_code="upstream_timeout" if status == "error" else None,
        error_category="transient" if status == "error" else None,
        intent_recorded_at=created_at,
        finalized_at=None if intent_only else created_at + timedelta(milliseconds=40),
        scopes=[_scope(rng, kb, status) for kb in requested],
        refs=refs,
    )


def _scope(rng: random.Random, kb: uuid.UUID, status: str) -> ScopeIn:
    return ScopeIn(
        knowledge_base_id=kb,
        requested=True,
        eligible_version_count=rng.randint(1, 20),
        result_count=rng.randint(1, 4) if status == "hit" else 0,
        serving_decision="deny" if status == "blocked" else "serve",
        scan_policy_decision="pass",
        effective_serving_status_counts={"served": rng.randint(0, 4)},
    )


def _ref(rng: random.Random, kb: uuid.UUID, rank: int) -> RefIn:
    chunk = uuid.UUID(int=rng.getrandbits(128), version=4)
    return RefIn(
        knowledge_base_id=kb,
        document_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        chunk_id=chunk,
        chunk_index=rng.randint(0, 300),
        chunk_content_hash=hashlib.sha256(chunk.bytes).hexdigest(),
        chunk_content_hash_key_version="ch-2026-01",
        citation_ref=f"[{rank}]",
        rank=rank,
        score=round(1.0 - rank * 0.07, 4),
    )


def largest_record(created_at: datetime) -> RecordIn:
    """A record as large as the schema lets refs make it (about 1.7 MB as JSON): a thousand
    refs, every text at its longest. What exports and bodies must hold memory for."""

    def text(length: int) -> str:
        return (uuid.uuid4().hex * (length // 32 + 1))[:length]

    refs = [
        RefIn(
            knowledge_base_id=uuid.uuid4(),
            document_id=uuid.uuid4(),
            document_version_id=uuid.uuid4(),
            chunk_id=uuid.uuid4(),
            chunk_stable_id=text(128),
            chunk_content_hash=text(256),
            chunk_content_hash_key_version=text(64),
            document_version_content_hash=text(256),
            citation_ref=text(128),
            source_uri_hash=text(256),
            rank=rank,
            score=0.5,
        )
        for rank in range(1, MAX_REFS_PER_RECORD + 1)
    ]
    return RecordIn(
        id=uuid.uuid4(),
        created_at=created_at,
        retrieval_status="hit",
        audit_write_status="finalized",
        refs=refs,
    )
