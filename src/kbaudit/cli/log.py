"""``kbaudit verify`` and ``kbaudit log checkpoint|prove|watch``: checking, as an outsider
would, what kbaudit signed."""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx2
import orjson
import typer
from rich.console import Console

from kbaudit.crypto import merkle
from kbaudit.crypto.checkpoint import Checkpoint, open_checkpoint
from kbaudit.crypto.signing import PublicKey, SignatureError
from kbaudit.services.verify import VerificationFailed, read_keys, verify_export
from kbaudit_sdk import AuditError, AuditReader, IntegrityError

log_app = typer.Typer(no_args_is_help=True, help="The tamper-evident log of records.")
err = Console(stderr=True)
Url = Annotated[str, typer.Option(envvar="KBAUDIT_URL", help="Base URL of the kbaudit API.")]
Key = Annotated[str, typer.Option(envvar="KBAUDIT_API_KEY", help="API key.", show_default=False)]
Keys = Annotated[
    str | None,
    typer.Option(
        envvar="KBAUDIT_SIGNING_KEYS",
        help="The signing keys to trust: a file or URL of the signing-keys route's JSON, or "
        "of verifier keys one a line. Default: ask the server at --url.",
        show_default=False,
    ),
]
DEFAULT_URL = "http://127.0.0.1:8000"


class CheckFailed(Exception):
    """What the server sent does not prove what it should: a proof, a grown log."""


def verify(
    folder: Annotated[Path, typer.Argument(help="The folder the export was downloaded to.")],
    keys: Keys = None,
    url: Url = DEFAULT_URL,
    export_id: Annotated[str | None, typer.Option("--export", help="Expected export id.")] = None,
    organization: Annotated[
        str | None, typer.Option(help="Expected organization id (uuid).")
    ] = None,
) -> None:
    """Verify a downloaded export offline: signature, files, rows, counts, checkpoint."""
    trusted = fail_on_error(lambda: load_keys(keys, url))
    try:
        verified = verify_export(folder, trusted, export_id=export_id, organization_id=organization)
    except VerificationFailed as exc:
        say(f"NOT verified: {exc}")
        raise typer.Exit(1) from exc
    print(verified.summary())


@log_app.command("checkpoint")
def checkpoint(api_key: Key, url: Url = DEFAULT_URL) -> None:
    """Print the organization's current checkpoint (a signed note)."""
    print(fail_on_error(lambda: AuditReader(url, api_key).checkpoint()), end="")


@log_app.command("prove")
def prove(
    ref: Annotated[str, typer.Argument(help="The record's ref or id.")],
    api_key: Key,
    url: Url = DEFAULT_URL,
    keys: Keys = None,
) -> None:
    """Prove that every write of a record is in the log of the current signed checkpoint."""
    client = AuditReader(url, api_key)

    def proved() -> str:
        head, _ = open_checkpoint(client.checkpoint(), load_keys(keys, url, client))
        answer = client.proof(ref, head.size)
        for entry in answer["entries"]:
            leaf = merkle.leaf_hash(base64.b64decode(entry["leaf"]))
            path = [base64.b64decode(h) for h in entry["inclusion_proof"]]
            if not merkle.verify_inclusion(entry["leaf_index"], head.size, leaf, path, head.root):
                raise CheckFailed(f"the proof of leaf {entry['leaf_index']} does not verify")
        indexes = ", ".join(str(entry["leaf_index"]) for entry in answer["entries"])
        return f"{ref}: in the log at index {indexes} of {head.size}, proofs verified"

    print(fail_on_error(proved))


@log_app.command("watch")
def watch(
    api_key: Key,
    url: Url = DEFAULT_URL,
    keys: Keys = None,
    state: Annotated[Path, typer.Option(help="Where the checkpoints seen are kept.")] = Path(
        "kbaudit-witness.json"
    ),
    interval: Annotated[float, typer.Option(help="Seconds between looks.")] = 60.0,
    once: Annotated[bool, typer.Option(help="Look once and stop.")] = False,
) -> None:
    """Check each new checkpoint against the last one seen: the log may only have grown.
    Fails loudly on a fork or a shrunken tree. The keys are pinned at the first look."""
    client = AuditReader(url, api_key)
    while True:
        fail_on_error(lambda: print(witness(client, state, keys, url)))
        if once:
            return
        time.sleep(interval)


def witness(client: AuditReader, state_file: Path, keys: str | None, url: str) -> str:
    """One look: the new checkpoint must be signed and consistent with the last one kept."""
    state: dict[str, Any] = orjson.loads(state_file.read_bytes()) if state_file.exists() else {}
    if keys is not None or "keys" not in state:
        state["keys"] = [key.vkey for key in load_keys(keys, url, client)]
    trusted = [PublicKey.from_vkey(vkey) for vkey in state["keys"]]
    note = client.checkpoint()
    new, _ = open_checkpoint(note, trusted)
    seen = state.setdefault("checkpoints", {}).get(new.origin)
    said = f"{new.origin}: first seen at {new.size} leaves"
    if seen is not None:
        old, _ = open_checkpoint(seen, trusted)
        _check_grown(client, old, new)
        said = f"{new.origin}: {new.size} leaves, consistent with {old.size}"
    state["checkpoints"][new.origin] = note
    partial = state_file.with_name(state_file.name + ".partial")
    partial.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    partial.replace(state_file)
    return said


def _check_grown(client: AuditReader, old: Checkpoint, new: Checkpoint) -> None:
    if new.size < old.size:
        raise CheckFailed(f"the log shrank from {old.size} to {new.size} leaves")
    answer = client.consistency(old.size, new.size)
    proof = [base64.b64decode(h) for h in answer["proof"]]
    if not merkle.verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise CheckFailed(
            f"FORK: the log at {new.size} leaves is not an extension of the one at {old.size}"
        )


def load_keys(source: str | None, url: str, client: AuditReader | None = None) -> list[PublicKey]:
    if source is None:
        text = (client or AuditReader(url, "")).signing_keys()
    elif source.startswith(("https://", "http://")):
        response = httpx2.get(source, timeout=30)
        if response.status_code != 200:
            raise CheckFailed(f"{source}: {response.status_code}")
        text = response.text
    else:
        text = Path(source).read_text()
    return read_keys(text)


def say(line: str) -> None:
    """One line on standard error, never wrapped: scripts and people both read it."""
    print(line, file=sys.stderr)


def fail_on_error(action: Any) -> Any:
    """Run a command's work; a refusal, a check that fails, a bad signature, a server that
    cannot be reached or a disk that is full is one line on standard error and exit
    status 1."""
    try:
        return action()
    except (
        AuditError,
        IntegrityError,
        CheckFailed,
        SignatureError,
        OSError,
        httpx2.HTTPError,
    ) as exc:
        say(f"error: {_plainly(exc)}")
        raise typer.Exit(1) from exc


def _plainly(exc: Exception) -> str:
    if isinstance(exc, httpx2.TransportError):
        return f"the kbaudit server cannot be reached ({type(exc).__name__}: {exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
