"""``kbaudit serve --processes N``: N API processes, each with a listening socket of its own.

uvicorn's own ``workers=N`` hands one listening socket to every process. Each new connection
then wakes them all, and the first to run accepts every connection waiting: with 16 clients
connecting at once, one process often took nearly all of them and the other sat idle
(16 clients of the query route over 2 processes got 160-200 or 350-480 requests/s, by
the luck of the connect). With ``SO_REUSEPORT`` each process listens on a socket of its
own and the kernel spreads connections over them by their addresses: 450-525 requests/s
in most runs.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

APP = "kbaudit.api.app:app_of_a_serving_process"
STOP_SECONDS = 30.0
EARLY_DEATH_SECONDS = 10.0
EARLY_DEATHS_TO_GIVE_UP = 3
log = structlog.get_logger("kbaudit.serve")


class PortTaken(Exception):
    pass


def serve_in_processes(host: str, port: int, count: int, options: dict[str, Any]) -> int:
    """Run ``count`` API processes until a stop signal comes; the exit status. A process
    that dies is replaced; one that keeps dying within seconds of its start (a setting
    that cannot work, a port taken) ends the whole with status 1."""
    _check_free(host, port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    children = [_start(host, port, options, n) for n in range(count)]
    early_deaths = [0] * count
    while not stop.wait(0.5):
        for n, (child, started) in enumerate(children):
            if child.is_alive():
                continue
            early = time.monotonic() - started < EARLY_DEATH_SECONDS
            early_deaths[n] = early_deaths[n] + 1 if early else 0
            log.error("api_process_died", process=child.name, exit_code=child.exitcode)
            if early_deaths[n] >= EARLY_DEATHS_TO_GIVE_UP:
                return _stop([child for child, _ in children], orderly=False)
            children[n] = _start(host, port, options, n)
    return _stop([child for child, _ in children], orderly=True)


def _start(host: str, port: int, options: dict[str, Any], n: int) -> tuple[BaseProcess, float]:
    spawn = multiprocessing.get_context("spawn")
    child = spawn.Process(target=_serve_one, args=(host, port, options), name=f"kbaudit-api-{n}")
    child.start()
    return child, time.monotonic()


def _stop(children: Sequence[BaseProcess], orderly: bool) -> int:
    for child in children:
        if child.is_alive():
            child.terminate()  # SIGTERM: uvicorn finishes the requests under way
    for child in children:
        child.join(STOP_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()
    return 0 if orderly else 1


def _check_free(host: str, port: int) -> None:
    """Refuse a port something else listens on. Without this check, a second kbaudit of the
    same user would quietly share the port (SO_REUSEPORT) and take half its connections."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortTaken(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    listener = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    config = uvicorn.Config(APP, factory=True, **options)
    uvicorn.Server(config).run(sockets=[listener])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
