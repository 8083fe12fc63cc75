"""Why a transfer ended: the enum the controller branches on, never on message text."""

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable outcome of an importer run (the `reason` of the termination report)."""

    COMPLETED = "Completed"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    IMAGE_TOO_LARGE = "ImageTooLarge"
    UNSUPPORTED_FORMAT = "UnsupportedFormat"
    UNSAFE_IMAGE = "UnsafeImage"
    INVALID_IMAGE = "InvalidImage"
    SOURCE_NOT_FOUND = "SourceNotFound"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    TLS_ERROR = "TLSError"
    NETWORK_ERROR = "NetworkError"
    SERVER_ERROR = "ServerError"
    NO_SPACE = "NoSpace"
    INVALID_CONFIG = "InvalidConfig"
    CONVERSION_FAILED = "ConversionFailed"
    STALLED = "Stalled"
    BUCKET_NOT_FOUND = "BucketNotFound"
    MANIFEST_INVALID = "ManifestInvalid"
    DIGEST_MISMATCH = "DigestMismatch"
    UNSAFE_ARCHIVE = "UnsafeArchive"
    CANCELLED = "Cancelled"
    CORRUPT_IMAGE = "CorruptImage"
    """The image's own tables point outside it (truncated or inconsistent): never converted."""
    ARCHIVE_REFUSED = "ArchiveRefused"
    """A tar (archive content or registry layer) exceeds a bound: header size, member count."""
    SOURCE_CHANGED = "SourceChanged"
    """The source served different bytes for the same range, or its validator changed."""
    REDIRECT_REFUSED = "RedirectRefused"
    """A redirect to a scheme or address the importer does not follow (https -> http, ...)."""
    ADDRESS_REFUSED = "AddressRefused"
    """The source is a loopback or link-local address and the cluster refuses those."""
    SCRATCH_SPACE_REQUIRED = "ScratchSpaceRequired"
    """The image must be copied before it is converted and no scratch volume is mounted
    (cdicontract.scratch): the controller restarts the pod with one. Not a failure."""
    INTERNAL = "InternalError"
    MALFORMED_REPORT = "MalformedReport"
    """Read by the controller, never written: the pod's termination report broke the
    report's rules (a field's type or bound, an unknown reason), so nothing of it is used."""


# Reasons that no amount of retrying can fix: the controller moves the DataVolume to
# Failed instead of restarting the pod forever (CDI issue #3619).
PERMANENT: frozenset[Reason] = frozenset(
    {
        Reason.CHECKSUM_MISMATCH,
        Reason.IMAGE_TOO_LARGE,
        Reason.UNSUPPORTED_FORMAT,
        Reason.UNSAFE_IMAGE,
        Reason.INVALID_IMAGE,
        Reason.INVALID_CONFIG,
        Reason.MANIFEST_INVALID,
        Reason.DIGEST_MISMATCH,
        Reason.UNSAFE_ARCHIVE,
        Reason.CORRUPT_IMAGE,
        Reason.ARCHIVE_REFUSED,
        Reason.REDIRECT_REFUSED,
        Reason.ADDRESS_REFUSED,
    }
)


def is_permanent(reason: Reason) -> bool:
    return reason in PERMANENT


class Failure(Exception):
    """A failed transfer with a machine-readable reason and a one-line human message
    (the importer's ImportFailure, the cloner's CloneFailure)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def permanent(self) -> bool:
        return is_permanent(self.reason)

    def __str__(self) -> str:
        return self.message
