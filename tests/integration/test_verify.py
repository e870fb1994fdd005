"""Signed manifests and ``kbaudit verify``: a clean download verifies offline; every kind of
tampering fails with a reason that names it."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from kbaudit.crypto.keyring import Keyring, rotate
from kbaudit.crypto.signing import PublicKey, SigningKeys
from kbaudit.document import canonical_json
from kbaudit.services.verify import VerificationFailed, read_keys, verify_export
from tests.conftest import Api
from tests.helpers import download_all, seed_demo, start_export, view_export

KEYS = "/v1/knowledge-base/audit/signing-keys"


def trusted(api: Api) -> list[PublicKey]:
    return read_keys(api.client.get(KEYS).text)


def export_to(api: Api, key: dict[str, str], folder: Path, **body: Any) -> dict[str, Any]:
    """Run an export and download every file of it, manifest included, into ``folder``."""
    job = view_export(api, key, start_export(api, key, **body)["id"])
    assert job["status"] == "succeeded", job
    folder.mkdir(parents=True)
    for name, content in download_all(api, key, job["id"], manifest=True):
        (folder / name).write_bytes(content)
    return job


@pytest.fixture
def exported(make_api: Callable[..., Api], tmp_path: Path) -> tuple[Api, Path, dict[str, Any]]:
    api = make_api(export_rows_per_file=10)
    key = api.key()
    seed_demo(api, key, 35)
    job = export_to(api, key, tmp_path / "export", export_format="ndjson")
    return api, tmp_path / "export", job


def fails(folder: Path, keys: list[PublicKey], reason: str, **expected: str) -> None:
    with pytest.raises(VerificationFailed, match=reason):
        verify_export(folder, keys, **expected)


def resign(folder: Path, signer: SigningKeys, change: Callable[[dict[str, Any]], None]) -> None:
    """What a signer that lies would hand over: a changed manifest, signed again."""
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    change(manifest)
    content = canonical_json(manifest)
    (folder / "manifest.json").write_bytes(content)
    signature = {
        "key_id": signer.active.kid,
        "algorithm": "Ed25519",
        "signature": base64.b64encode(signer.sign(content)).decode(),
    }
    (folder / "manifest.json.sig").write_bytes(orjson.dumps(signature))


def another_signer() -> SigningKeys:
    return SigningKeys(Keyring({1: os.urandom(32)}))


def rows_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_clean_download_verifies_with_its_figures(
    exported: tuple[Api, Path, dict[str, Any]],
) -> None:
    api, folder, job = exported
    verified = verify_export(folder, trusted(api), export_id=job["id"])
    assert (verified.files, verified.rows, verified.status) == (4, 35, "succeeded")
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert manifest["total_rows"] == 35
    assert [f["name"] for f in manifest["files"]] == [
        f"kb-audit-{n:05d}.ndjson" for n in (1, 2, 3, 4)
    ]
    assert verified.checkpoint.size == 35
    assert "verified" in verified.summary()


def test_a_csv_export_verifies_too(make_api: Callable[..., Api], tmp_path: Path) -> None:
    api = make_api(export_rows_per_file=7)
    key = api.key()
    seed_demo(api, key, 30)
    job = export_to(api, key, tmp_path / "csv", statuses=["hit", "miss"])
    verified = verify_export(tmp_path / "csv", trusted(api))
    assert verified.rows == job["total_rows"] > 0


def test_a_flipped_byte_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    path = folder / "kb-audit-00002.ndjson"
    content = bytearray(path.read_bytes())
    content[100] ^= 0x01
    path.write_bytes(bytes(content))
    fails(folder, trusted(api), "kb-audit-00002.ndjson does not match its SHA-256")


def test_a_byte_that_is_not_utf8_in_a_csv_file_fails_plainly(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    api = make_api()
    key = api.key()
    seed_demo(api, key, 5)
    export_to(api, key, tmp_path / "csv")
    path = tmp_path / "csv" / "kb-audit-00001.csv"
    content = bytearray(path.read_bytes())
    content[content.index(b"\n") + 3] = 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(VerificationFailed, match=r"kb-audit-00001.csv"):
        verify_export(tmp_path / "csv", trusted(api))


def test_a_truncated_file_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    path = folder / "kb-audit-00003.ndjson"
    path.write_bytes(path.read_bytes()[:-40])
    fails(folder, trusted(api), "kb-audit-00003.ndjson has .* bytes; the manifest says")


def test_a_missing_file_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    (folder / "kb-audit-00004.ndjson").unlink()
    fails(folder, trusted(api), "kb-audit-00004.ndjson is listed in the manifest but missing")


def test_an_extra_file_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    shutil.copy(folder / "kb-audit-00001.ndjson", folder / "kb-audit-00005.ndjson")
    fails(folder, trusted(api), "kb-audit-00005.ndjson is in the folder but not in the manifest")


def test_two_swapped_rows_fail(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    path = folder / "kb-audit-00001.ndjson"
    rows = rows_of(path)
    rows[2], rows[3] = rows[3], rows[2]
    path.write_bytes(b"".join(rows))
    fails(folder, trusted(api), "does not match its SHA-256")


def test_rows_out_of_order_fail_even_under_a_trusted_signature(
    exported: tuple[Api, Path, dict[str, Any]],
) -> None:
    api, folder, _ = exported
    liar = another_signer()
    path = folder / "kb-audit-00001.ndjson"
    rows = rows_of(path)
    rows[2], rows[3] = rows[3], rows[2]
    path.write_bytes(b"".join(rows))

    def rehash(manifest: dict[str, Any]) -> None:
        import hashlib

        manifest["files"][0]["sha256_plaintext"] = hashlib.sha256(path.read_bytes()).hexdigest()

    resign(folder, liar, rehash)
    fails(folder, [*trusted(api), liar.active], r"row 4 .* is out of \(created_at, id\) order")


def test_a_row_outside_the_filters_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    liar = another_signer()
    resign(folder, liar, lambda m: m["filters"].update(statuses=["blocked"]))
    fails(folder, [*trusted(api), liar.active], "has a status outside the filter")


def test_a_changed_count_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    manifest["total_rows"] = 34
    (folder / "manifest.json").write_bytes(canonical_json(manifest))
    fails(folder, trusted(api), "the signature of manifest.json does not verify")
    liar = another_signer()
    resign(folder, liar, lambda m: m["files"][1].update(rows=9))
    fails(folder, [*trusted(api), liar.active], "kb-audit-00002.ndjson holds 10 rows; .* says 9")


def test_a_manifest_signed_by_another_key_fails(
    exported: tuple[Api, Path, dict[str, Any]],
) -> None:
    api, folder, _ = exported
    keys = trusted(api)
    resign(folder, another_signer(), lambda m: None)
    fails(folder, keys, "is signed by key .* which is not listed")
    signature = orjson.loads((folder / "manifest.json.sig").read_bytes())
    signature["key_id"] = keys[0].kid  # claims the real key; the signature is another's
    (folder / "manifest.json.sig").write_bytes(orjson.dumps(signature))
    fails(folder, keys, "does not verify with key")


def test_a_forged_checkpoint_fails(exported: tuple[Api, Path, dict[str, Any]]) -> None:
    api, folder, _ = exported
    liar, forger = another_signer(), another_signer()
    forged = forger.sign_note("kbaudit/x\n0\n" + base64.b64encode(bytes(32)).decode() + "\n")
    resign(folder, liar, lambda m: m.update(checkpoint=forged))
    fails(folder, [*trusted(api), liar.active], "checkpoint: the note is not signed by any")


def test_files_of_another_export_or_organization_fail(
    exported: tuple[Api, Path, dict[str, Any]], tmp_path: Path
) -> None:
    api, folder, job = exported
    key = api.key()
    other = export_to(api, key, tmp_path / "other", export_format="ndjson", statuses=["hit"])
    keys = trusted(api)
    fails(tmp_path / "other", keys, "is of export_id", export_id=job["id"])
    shutil.copy(tmp_path / "other" / "manifest.json", folder / "manifest.json")
    shutil.copy(tmp_path / "other" / "manifest.json.sig", folder / "manifest.json.sig")
    fails(folder, keys, "does not match its SHA-256|has .* bytes|not in the manifest")

    globex = api.key(org="globex")
    seed_demo(api, globex, 5)
    theirs = export_to(api, globex, tmp_path / "globex", export_format="ndjson")
    mine = orjson.loads((tmp_path / "other" / "manifest.json").read_bytes())["organization_id"]
    fails(tmp_path / "globex", keys, "is of organization_id", organization_id=mine)
    assert theirs["id"] != other["id"]


def test_a_key_rotation_keeps_old_exports_verifiable(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    api = make_api()
    key = api.key()
    seed_demo(api, key, 12)
    export_to(api, key, tmp_path / "before", export_format="ndjson")
    settings = api.container.settings
    same_store: dict[str, Any] = {"data_dir": settings.data_dir}
    if settings.master_key is None:
        rotate(settings.data_dir)
    else:
        old = settings.master_key.get_secret_value()
        same_store |= {
            "master_key": f"2:{base64.b64encode(os.urandom(32)).decode()},{old}",
            "database_url": settings.database_url,
            "blob_url": settings.blob_url,
        }
    rotated = make_api(**same_store)
    listed = rotated.client.get(KEYS).json()["keys"]
    assert [k["status"] for k in listed] == ["active", "retired"]
    keys = trusted(rotated)
    old_manifest = verify_export(tmp_path / "before", keys)
    assert old_manifest.key_id == listed[1]["kid"]
    export_to(rotated, key, tmp_path / "after", export_format="ndjson")
    assert verify_export(tmp_path / "after", keys).key_id == listed[0]["kid"]
