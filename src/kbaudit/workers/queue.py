"""The Huey queue and the export tasks registered on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey

from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.parts import run_part
from kbaudit.services.exports.planning import plan_job

INLINE = "inline"


def build_huey(queue_url: str | None, data_dir: Path, name: str = "kbaudit") -> Huey:
    """``None``: SQLite in the data folder. ``redis://``: Redis, for workers on many hosts.
    ``inline``: tasks run at once in the caller (tests and debugging)."""
    if queue_url == INLINE:
        return MemoryHuey("kbaudit", immediate=True, results=False)
    if queue_url is None:
        return SqliteHuey("kbaudit", filename=str(data_dir / "queue.db"), results=False)
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        # The name keys the queue in Redis: deployments that share a server need their own.
        return RedisHuey(name, url=queue_url, results=False)
    raise ValueError(f"KBAUDIT_QUEUE_URL: unsupported queue {queue_url!r}")


class ExportTasks:
    """Registers the export tasks on ``huey`` and is the services' dispatcher. The tasks carry
    ids only, and find the services' dependencies through ``deps``, set once built."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self.deps: ExportDeps | None = None

        @huey.task(name="kbaudit.plan_export")  # type: ignore[untyped-decorator]
        def plan(job_id: str) -> None:
            plan_job(self._deps(), job_id)

        @huey.task(name="kbaudit.run_part")  # type: ignore[untyped-decorator]
        def part(job_id: str, part_no: int) -> None:
            run_part(self._deps(), job_id, part_no)

        self._plan: Any = plan
        self._part: Any = part

    def plan_export(self, job_id: str) -> None:
        self._plan(job_id)

    def run_part(self, job_id: str, part_no: int) -> None:
        self._part(job_id, part_no)

    def _deps(self) -> ExportDeps:
        assert self.deps is not None, "ExportTasks.deps is set by build_container"
        return self.deps
