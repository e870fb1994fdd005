"""The soak run, short: three minutes of the scale-out mode under load, hostile clients and a
fault every 30 seconds (each of the five once), with its own PostgreSQL, Redis and SeaweedFS.
``bench/soak.py`` runs it for 30 minutes; bench/README.md holds such a run's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.scaleout
REPO = Path(__file__).resolve().parents[2]
SOAK = [sys.executable, "-m", "bench.soak"]
CHECKS = [
    "written once",
    "log agrees",
    "checkpoints consistent",
    "exports ended",
    "webhooks delivered",
    "no server errors",
    "hostile refused",
    "memory",
    "purged",
]


@pytest.mark.timeout(900)
def test_three_minutes_under_faults_lose_nothing_and_answer_honestly(tmp_path: Path) -> None:
    folder = tmp_path / "soak"
    run = subprocess.run(
        [*SOAK, "--minutes", "3", "--fault-every", "30", "--folder", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
    )
    report = json.loads((folder / "soak.json").read_text())
    failed = [c for c in report["checks"] if not c["passed"]]
    assert not failed, run.stdout + run.stderr
    assert run.returncode == 0, run.stderr
    assert [c["check"] for c in report["checks"]] == CHECKS
    faults = [name for name, _, _ in report["faults"]]
    assert len(set(faults)) == 5, faults
    assert all(m["records_per_second"] > 0 for m in report["minutes"]), report["minutes"]
    assert (folder / "soak.png").read_bytes().startswith(b"\x89PNG")
