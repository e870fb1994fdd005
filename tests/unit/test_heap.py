"""Long-running processes give large freed blocks back to the system (kbaudit.runtime)."""

from __future__ import annotations

import subprocess
import sys

# Frees a large block (glibc then raises its mmap threshold above 1 MiB), makes 100 blocks
# of 1 MiB, each followed by a small one that stays, frees the large ones, and prints how
# much of them the process still holds.
SCRIPT = """
import sys
from kbaudit.runtime import settle_heap

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

if sys.argv[1] == "settled":
    settle_heap()
del_me = b"x" * (8 << 20)
del del_me
before = rss_mb()
large, small = [], []
for n in range(100):
    large.append(b"%d" % n * (1 << 20))
    small.append(b"%d" % n * 2048)
del large
print(rss_mb() - before)
"""


def _held_mb(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_a_settled_process_gives_large_freed_blocks_back() -> None:
    assert _held_mb("plain") >= 50  # glibc's own way: they stay on the heap
    assert _held_mb("settled") < 10
