"""The access log on SQLite: each process appends its entries to a file of its own, and a
thread moves them into the database in batches.

Every query writes an entry before it answers. Committed as they came (concurrent ones
sharing a commit), the entries of ``serve --processes 2`` made the two processes take turns
on SQLite's one writer lock, and the query route's p99 at 16 clients sat at the 100 ms it
must stay under (figures at ``MOVE_INTERVAL``).

An append is one ``write`` to the process's spool file. Once it returns, the entry is in the
kernel's page cache and survives the process being killed, as a commit does with SQLite's
``synchronous=NORMAL`` (neither survives the machine losing power before the kernel writes it
out).

Moving a file: its owner closes it (the next append starts a new one, so nothing is appended
to the old one any more), then, in one transaction, inserts the old file's entries and
records its name; then deletes it. A recorded name is never moved again, so a file whose
mover died before deleting it is only deleted. A process holds a lock on the file it
appends to: the others move only files no live process holds, which is how the files of a
process that died reach the log.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import structlog

from kbaudit.errors import StoreUnavailable
from kbaudit.store.access_log import AccessEntry

log = structlog.get_logger("kbaudit.store")

# Seconds between moves: how far behind another process's entries may show in the log (a
# read of the log moves its own process's first). At 16 clients over a million records:
# moving every 0.1 s, 454-497 requests/s with a p99 of 85-89 ms; every second, 513-538 and
# 76 ms; committing each batch of entries, 358-394 and 102-115 ms (alternating runs).
MOVE_INTERVAL = 1.0
SUFFIX = ".spool"
# A process killed between making its file and naming it leaves it, empty, as ".{name}.new".
# Naming takes microseconds: one this old is such a leftover.
LEFTOVER_SECONDS = 60.0

# (file name, its entries, whether a recorded name's file is gone): one transaction.
Move = Callable[[str, Sequence[AccessEntry], Callable[[str], bool]], None]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(AccessEntry).decode


class _SpoolFile:
    """A file this process appends to, locked for as long as it is open."""

    def __init__(self, folder: Path) -> None:
        name = uuid.uuid4().hex
        # Locked before it has the name movers look for: none can take it while it is new.
        making = folder / f".{name}.new"
        self.fd = os.open(making, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.path = folder / f"{name}{SUFFIX}"
        os.rename(making, self.path)

    def write(self, line: bytes) -> None:
        if os.fstat(self.fd).st_nlink == 0:  # deleted, with the data folder perhaps
            raise FileNotFoundError(f"{self.path} was deleted")
        view = memoryview(line)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        os.close(self.fd)


class AccessSpool:
    """``append`` returns once the entry would survive this process being killed; ``flush``
    moves what every process that is gone, and this one, appended so far."""

    def __init__(self, folder: Path, move: Move) -> None:
        self._folder = folder
        self._move = move
        folder.mkdir(mode=0o700, exist_ok=True)
        self._appending = threading.Lock()  # appends, against starting a new file
        self._moving = threading.Lock()  # one move of this process's files at a time
        # Made at the first append after a move: a process that logs nothing makes no file.
        self._current: _SpoolFile | None = None
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kbaudit-access-spool", daemon=True)
        self._thread.start()

    def append(self, entry: AccessEntry) -> None:
        line = _encode(entry) + b"\n"
        with self._appending:
            if self._closed:
                raise RuntimeError("the access log is closed")
            try:
                if self._current is None:
                    self._current = _SpoolFile(self._folder)
                self._current.write(line)
            except OSError as exc:
                # An entry that cannot be kept must not be acknowledged: the request that
                # made it fails, and the client may retry once the folder is back.
                raise StoreUnavailable(f"the access log cannot be written: {exc}") from exc

    def flush(self) -> None:
        self._start_new_file()
        self._move_unheld()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._appending:
            last, self._current, self._closed = self._current, None, True
        if last is not None:
            last.close()
        self._move_unheld()

    def _run(self) -> None:
        while not self._stop.wait(MOVE_INTERVAL):
            try:
                self.flush()
            except Exception as exc:  # the entries stay in their files for the next try
                log.error("access_spool_move_failed", error=repr(exc))

    def _start_new_file(self) -> None:
        """The next append goes to a new file; the current one's lock goes with it, and it can
        be moved."""
        with self._appending:
            old, self._current = self._current, None
        if old is not None:
            old.close()

    def _move_unheld(self) -> None:
        """Move every file no process appends to any more; a held one is left to its owner."""
        with self._moving:
            for path in sorted(self._folder.glob(f"*{SUFFIX}")):
                self._move_if_unheld(path)
            self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        oldest = time.time() - LEFTOVER_SECONDS
        for path in self._folder.glob(".*.new"):
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
            except FileNotFoundError:  # another process removed it first
                pass

    def _move_if_unheld(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # another process moved it
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            if not _still_named(fd, path):  # moved while this waited for its lock
                return
            content = path.read_bytes()
            if content:
                entries = _entries(path, content)
                self._move(path.name, entries, lambda name: not (self._folder / name).exists())
            path.unlink()  # before the lock goes: a file that can be locked is not moved yet
        finally:
            os.close(fd)


def _still_named(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _entries(path: Path, content: bytes) -> list[AccessEntry]:
    entries = []
    for line in content.splitlines():
        try:
            entries.append(_decode(line))
        except msgspec.DecodeError:
            # Only a write cut off by a full disk can leave one; its request never answered.
            log.error("access_spool_line_unreadable", file=path.name, length=len(line))
    return entries
