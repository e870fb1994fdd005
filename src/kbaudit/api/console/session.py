"""Console sessions: the API key behind a sign-in, sealed in the session cookie.

The cookie is encrypted and authenticated (AES-256-GCM under a key the master keyring
derives), so every host of a deployment opens it and nobody else can read or forge it; it
holds the key, the session's CSRF token and its expiry. Nothing is kept on the server:
signing out clears the cookie, and revoking the key ends every session made with it (each
request authenticates the key again).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kbaudit.crypto.keyring import Keyring

COOKIE = "kbaudit_console"
LIFETIME_SECONDS = 8 * 3600
_PURPOSE = "console-session/v1"
_CONTEXT = b"kbaudit console session"
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Session:
    api_key: str
    csrf_token: str
    expires_at: float


class SessionSeal:
    def __init__(self, keyring: Keyring, now: Callable[[], float] = time.time) -> None:
        self._keyring = keyring
        self._now = now

    def new(self, api_key: str) -> Session:
        return Session(api_key, secrets.token_urlsafe(32), self._now() + LIFETIME_SECONDS)

    def seal(self, session: Session) -> str:
        version = self._keyring.current
        nonce = secrets.token_bytes(_NONCE_BYTES)
        body = orjson.dumps([session.api_key, session.csrf_token, session.expires_at])
        sealed = AESGCM(self._key(version)).encrypt(nonce, body, _CONTEXT)
        raw = struct.pack(">I", version) + nonce + sealed
        # Without padding: a cookie value with "=" in it would be sent quoted.
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def open(self, cookie: str | None) -> Session | None:
        """The session in the cookie; None when there is none, or it is forged or expired."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            (version,) = struct.unpack(">I", raw[:4])
            nonce, sealed = raw[4 : 4 + _NONCE_BYTES], raw[4 + _NONCE_BYTES :]
            body = AESGCM(self._key(version)).decrypt(nonce, sealed, _CONTEXT)
            api_key, csrf_token, expires_at = orjson.loads(body)
        except (binascii.Error, struct.error, KeyError, InvalidTag, ValueError):
            return None
        if expires_at <= self._now():
            return None
        return Session(api_key, csrf_token, expires_at)

    def _key(self, version: int) -> bytes:
        return self._keyring.derive(_PURPOSE, version)
