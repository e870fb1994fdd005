"""The one exception tree. Each class carries the contract's ``error`` code and whether a
retry can help; the HTTP edge owns the mapping from class to status code."""

from __future__ import annotations


class KbAuditError(Exception):
    code = "internal_error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthenticationRequired(KbAuditError):
    code = "authentication_required"


class InsufficientScope(KbAuditError):
    code = "insufficient_scope"


class NotFound(KbAuditError):
    code = "not_found"


class InvalidCursor(KbAuditError):
    code = "invalid_cursor"


class CursorMismatch(KbAuditError):
    code = "cursor_mismatch"


class InvalidRequest(KbAuditError):
    """Input that passed schema validation but breaks a rule across fields."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.field = field


class OutsideRetention(InvalidRequest):
    """A record the organization's retention would purge at once, or one from the future."""

    code = "outside_retention"


class PayloadTooLarge(KbAuditError):
    code = "payload_too_large"


class RecordConflict(KbAuditError):
    """A write that would change a record the store no longer lets change."""

    code = "record_conflict"


class StoreUnavailable(KbAuditError):
    code = "store_unavailable"
    retryable = True


class KeyUnavailable(KbAuditError):
    """A data key that cannot be opened: destroyed, or wrapped under a key we do not hold."""

    code = "key_unavailable"


class CiphertextCorrupt(KbAuditError):
    """Stored ciphertext that fails authentication: it was altered or truncated."""

    code = "export_file_corrupt"


class BlobNotFound(KbAuditError):
    code = "not_found"


class InvalidDownloadToken(KbAuditError):
    code = "invalid_download_token"


class DownloadTokenExpired(KbAuditError):
    code = "download_token_expired"


class ExportExpired(KbAuditError):
    code = "export_expired"


class TooManyAttempts(KbAuditError):
    """Too many failed authentications from one client address, or for one key id."""

    code = "too_many_attempts"
    retryable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeout(KbAuditError):
    code = "request_timeout"
    retryable = True


class RangeNotSatisfiable(KbAuditError):
    code = "range_not_satisfiable"


class ExportInProgress(KbAuditError):
    code = "export_in_progress"
    retryable = True


class IdempotencyKeyReused(KbAuditError):
    code = "idempotency_key_reused"


class DestinationCheckFailed(KbAuditError):
    """A destination's preflight (write, read back, delete a probe) did not go through."""

    code = "destination_check_failed"


class ConfigurationError(Exception):
    """Settings that cannot work together; raised at start-up, before anything is served."""
