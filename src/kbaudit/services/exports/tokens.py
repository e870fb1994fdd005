"""Short-lived download tokens: HMAC-SHA256 over (organization, export, file, expiry, key
version) with a versioned server secret. A token reads ``<expiry>.<version>.<mac>``; what it
is for is not in it but in the request it must match."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from kbaudit.crypto.keyring import Keyring
from kbaudit.decoding import whole_number
from kbaudit.errors import DownloadTokenExpired, InvalidDownloadToken
from kbaudit.services.clock import Clock

MAX_TOKEN_LENGTH = 128


class DownloadTokens:
    def __init__(self, keyring: Keyring, ttl_seconds: int, clock: Clock) -> None:
        self._keyring = keyring
        self._ttl = ttl_seconds
        self._clock = clock

    def mint(self, org_id: int, export_id: str, file_name: str) -> str:
        expiry = int(self._clock().timestamp()) + self._ttl
        version = self._keyring.current
        mac = self._mac(version, org_id, export_id, file_name, expiry)
        return f"{expiry}.{version}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def check(self, token: str, org_id: int, export_id: str, file_name: str) -> None:
        invalid = InvalidDownloadToken("the download token is not valid for this file")
        parts = token.split(".") if len(token) <= MAX_TOKEN_LENGTH else []
        if len(parts) != 3:
            raise invalid
        expiry, version = whole_number(parts[0]), whole_number(parts[1])
        if expiry is None or version not in self._keyring.versions:
            raise invalid
        try:
            presented = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (binascii.Error, ValueError) as exc:
            raise invalid from exc
        expected = self._mac(version, org_id, export_id, file_name, expiry)
        if not hmac.compare_digest(presented, expected):
            raise invalid
        if expiry <= self._clock().timestamp():
            raise DownloadTokenExpired("the download token has expired; view the export again")

    def _mac(self, version: int, org_id: int, export_id: str, file_name: str, expiry: int) -> bytes:
        message = f"{org_id}\n{export_id}\n{file_name}\n{expiry}\n{version}".encode()
        return hmac.new(
            self._keyring.derive("download-token", version), message, hashlib.sha256
        ).digest()
