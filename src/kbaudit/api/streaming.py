"""Sending an export file, for both edges: which content coding the client takes, the headers
that depend on it, the one byte range a client may ask for, and a stream that decrypts the
next chunk while the current one is on the wire."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

from fastapi import Request

from kbaudit.decoding import whole_number
from kbaudit.services.exports.download import Download, Wanted


def file_headers(download: Download) -> dict[str, str]:
    """What every answer with a file carries: its name to save it as, and its coding."""
    return {
        "Content-Disposition": f'attachment; filename="{download.file_name}"',
        **coding_headers(download),
    }


# RFC 9110 section 12.4.2: a weight of zero, "q=0" to "q=0.000", refuses the coding.
_REFUSED = re.compile(r"q=0(\.0{0,3})?")


def accepts_zstd(request: Request) -> bool:
    """Whether the request's ``Accept-Encoding`` names zstd without refusing it."""
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, weight = coding.partition(";")
        if name.strip().lower() == "zstd":
            return not _REFUSED.fullmatch(weight.strip().lower().replace(" ", ""))
    return False


def coding_headers(download: Download) -> dict[str, str]:
    """The headers that depend on the content coding. A zstd-coded file is a representation
    of its own: its length is unknown until it is sent, and its ETag differs from the decoded
    file's (RFC 9110 section 8.8.3)."""
    if download.encoding is None:
        return {
            "Vary": "Accept-Encoding",
            "Content-Length": str(download.stop - download.start),
            "ETag": f'"{download.sha256}"',
        }
    return {
        "Vary": "Accept-Encoding",
        "Content-Encoding": download.encoding,
        "ETag": f'"{download.sha256}+{download.encoding}"',
    }


def parse_range(header: str | None) -> Wanted | None:
    """One ``bytes=`` range, else None (the whole file: several ranges, other units and
    malformed headers are ignored, as RFC 9110 lets a server do)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, dash, last = header.removeprefix("bytes=").strip().partition("-")
    start, stop = whole_number(first), whole_number(last)
    if not dash or not (first or last) or (first and start is None) or (last and stop is None):
        return None
    return start, stop


async def one_ahead(chunks: Iterator[bytes]) -> AsyncIterator[memoryview]:
    """Decrypt the next chunk in a thread while the current one is on the wire. The thread is
    handed the work before the chunk goes to the server, not when the loop next gets control:
    after the send, decrypting and sending would take turns."""
    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, next, chunks, None)
    try:
        while (chunk := await pending) is not None:
            pending = loop.run_in_executor(None, next, chunks, None)
            # A view: the loop's transport slices off what the socket took, and slicing 8 MB
            # of bytes would copy the rest once more (2-5 points of raw speed).
            yield memoryview(chunk)
    finally:
        if not pending.done():
            await asyncio.wait([pending])
        await asyncio.to_thread(_close, chunks)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
