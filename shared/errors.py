"""The platform's one exception tree.

    PlatformError
    ├── ConfigurationError      a required setting is missing or malformed; stops cold start
    ├── InvalidRequest          an HTTP request's parameters or body are invalid; answered with 400
    ├── Conflict                a request that clashes with what is stored; answered with 409
    ├── PermanentError          acknowledged and recorded with its reason; never retried
    │   ├── InvalidEvent        not JSON, or not the envelope/payload schema
    │   └── IllegalTransition   the state machine refuses the event
    └── RetryableError          raised out of the handler so Pub/Sub retries, then dead-letters
        ├── AwaitingPrerequisite   arrived before the event it depends on; permanent after a grace period
        ├── DatabaseUnavailable
        ├── PublishFailed
        ├── ChainUnavailable
        │   └── RangeTooLarge   the provider refused an eth_getLogs range; relay halves it
        ├── PriceSourceUnavailable   a price API kept failing after its in-call retries
        └── SanctionsListUnavailable no list loaded yet, or OFAC's files could not be downloaded

Third-party exceptions are mapped to these once, at the adapter that caught them, with `from exc`.
"""


class PlatformError(Exception):
    """Base of every error this platform raises on purpose."""


class ConfigurationError(PlatformError):
    """A required setting is missing or malformed."""

    def __init__(self, message: str, *, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


class InvalidRequest(PlatformError):
    """Bad input to an HTTP endpoint; `problems` maps each offending field to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems.items()))
        self.problems = problems


class Conflict(PlatformError):
    """A request that clashes with what is stored (a wallet another user owns); `field` names the cause."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class PermanentError(PlatformError):
    """Input that will never succeed; acknowledge it and record why."""

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class InvalidEvent(PermanentError):
    """The message is not JSON, or does not match the envelope or payload schema."""


class IllegalTransition(PermanentError):
    """The escrow state machine does not allow this event in the current state."""


class RetryableError(PlatformError):
    """A transient failure; raise it so Pub/Sub redelivers with backoff."""


class AwaitingPrerequisite(RetryableError):
    """The event depends on one not applied yet (out-of-order delivery); retry within a grace period."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DatabaseUnavailable(RetryableError):
    """PostgreSQL could not be reached or dropped the connection."""


class PublishFailed(RetryableError):
    """Pub/Sub did not confirm a publish in time."""


class ChainUnavailable(RetryableError):
    """The Ethereum JSON-RPC endpoint failed or timed out."""


class RangeTooLarge(ChainUnavailable):
    """The provider refused an eth_getLogs range (too many results, or range too wide)."""


class PriceSourceUnavailable(RetryableError):
    """A price source kept answering errors (429/5xx/timeouts) after the retries inside one call."""


class SanctionsListUnavailable(RetryableError):
    """No sanctions list is loaded yet, or OFAC's files could not be downloaded."""
