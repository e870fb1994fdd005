"""Envelope encryption of export files: a Tink streaming-AEAD keyset per export, stored only
wrapped by its organization's key-encryption key (KEK).

``KeyManager`` is the seam a cloud KMS would implement; ``LocalKeyManager`` derives each
organization's KEK from the master keyring, so rotating the keyring rotates every KEK while
old versions still unwrap what they wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import tink
from tink import aead, secret_key_access, streaming_aead
from tink.proto import aes_gcm_pb2, tink_pb2

from kbaudit.crypto.keyring import Keyring
from kbaudit.errors import KeyUnavailable

aead.register()
streaming_aead.register()

DATA_KEY_TEMPLATE = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB


@dataclass(frozen=True, slots=True)
class WrappedKeyset:
    kek_version: int
    ciphertext: bytes


class KeyManager(Protocol):
    def new_data_key(self, org_uuid: str, export_id: str) -> WrappedKeyset: ...

    def open_data_key(
        self, org_uuid: str, export_id: str, wrapped: WrappedKeyset
    ) -> streaming_aead.StreamingAead: ...

    def wrap_secret(self, org_uuid: str, purpose: str, secret: bytes) -> WrappedKeyset: ...

    def unwrap_secret(self, org_uuid: str, purpose: str, wrapped: WrappedKeyset) -> bytes: ...


class LocalKeyManager:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def new_data_key(self, org_uuid: str, export_id: str) -> WrappedKeyset:
        handle = tink.new_keyset_handle(DATA_KEY_TEMPLATE)
        version = self._keyring.current
        ciphertext = tink.proto_keyset_format.serialize_encrypted(
            handle, self._kek(org_uuid, version), _context(org_uuid, export_id)
        )
        return WrappedKeyset(version, ciphertext)

    def open_data_key(
        self, org_uuid: str, export_id: str, wrapped: WrappedKeyset
    ) -> streaming_aead.StreamingAead:
        try:
            handle = tink.proto_keyset_format.parse_encrypted(
                wrapped.ciphertext,
                self._kek(org_uuid, wrapped.kek_version),
                _context(org_uuid, export_id),
            )
        except (tink.TinkError, KeyError) as exc:
            raise KeyUnavailable("the export's data key cannot be unwrapped") from exc
        primitive: streaming_aead.StreamingAead = handle.primitive(streaming_aead.StreamingAead)
        return primitive

    def wrap_secret(self, org_uuid: str, purpose: str, secret: bytes) -> WrappedKeyset:
        """A secret kbaudit must use again later (a webhook's signing secret, a bucket's
        secret key), sealed under the organization's KEK; ``purpose`` names what it is for."""
        version = self._keyring.current
        context = _secret_context(org_uuid, purpose)
        return WrappedKeyset(version, self._kek(org_uuid, version).encrypt(secret, context))

    def unwrap_secret(self, org_uuid: str, purpose: str, wrapped: WrappedKeyset) -> bytes:
        try:
            kek = self._kek(org_uuid, wrapped.kek_version)
            secret: bytes = kek.decrypt(wrapped.ciphertext, _secret_context(org_uuid, purpose))
        except (tink.TinkError, KeyError) as exc:
            raise KeyUnavailable("a stored secret cannot be unwrapped") from exc
        return secret

    def _kek(self, org_uuid: str, version: int) -> aead.Aead:
        """The organization's AES-256-GCM KEK at one keyring version, as a Tink primitive."""
        key = aes_gcm_pb2.AesGcmKey(
            version=0, key_value=self._keyring.derive(f"kek/{org_uuid}", version)
        )
        keyset = tink_pb2.Keyset(
            primary_key_id=version,
            key=[
                tink_pb2.Keyset.Key(
                    key_data=tink_pb2.KeyData(
                        type_url="type.googleapis.com/google.crypto.tink.AesGcmKey",
                        value=key.SerializeToString(),
                        key_material_type=tink_pb2.KeyData.SYMMETRIC,
                    ),
                    status=tink_pb2.ENABLED,
                    key_id=version,
                    output_prefix_type=tink_pb2.RAW,
                )
            ],
        )
        handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
        primitive: aead.Aead = handle.primitive(aead.Aead)
        return primitive


def _context(org_uuid: str, export_id: str) -> bytes:
    """Associated data binding a wrapped keyset to its organization and export."""
    return f"kbaudit/export-keyset/{org_uuid}/{export_id}".encode()


def _secret_context(org_uuid: str, purpose: str) -> bytes:
    return f"kbaudit/secret/{org_uuid}/{purpose}".encode()
