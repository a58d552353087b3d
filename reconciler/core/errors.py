"""One exception tree for the whole product, mapped at the edges.

Providers translate SDK exceptions into ``ProviderError`` subclasses, the spec
layer reports ``SpecError`` values (file, line, field path), and the CLI turns
any ``ReconcilerError`` into a one-line message and exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core import escaping


class ReconcilerError(Exception):
    """Base of every error the product raises on purpose."""


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One problem in one spec file, printed as ``file:line: field.path: message`` on one line
    (control characters from file names or quoted values are printed as escapes)."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        field = self.field or "(file)"
        return escaping.visible(f"{self.file}:{self.line}: {field}: {self.message}")


class SpecError(ReconcilerError):
    """A spec tree (or config file) that does not render or validate."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(ReconcilerError):
    """The daemon's own configuration is unusable (names the file and field)."""


class SourceError(ReconcilerError):
    """The Git source could not be read: unreachable remote, missing branch, force-push."""


class StoreError(ReconcilerError):
    """The state store could not be opened or written."""


class Fenced(ReconcilerError):
    """This replica's claim on a cluster lapsed or moved: the database refused an execution's write."""


class PolicyDenied(ReconcilerError):
    """A guardrail denied a change; the message names the policy."""


class PlanRefused(ReconcilerError):
    """A saved plan no longer matches the branch head or live state."""


class ProviderError(ReconcilerError):
    """A cloud call failed. The message names the provider, call, account and region."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        call: str = "",
        account: str = "",
        region: str = "",
        code: str = "",
    ) -> None:
        self.provider = provider
        self.call = call
        self.account = account
        self.region = region
        self.code = code
        where = "/".join(part for part in (provider, account, region) if part)
        prefix = f"{where} {call}".strip()
        detail = f"{code}: {message}" if code else message
        super().__init__(f"{prefix}: {detail}" if prefix else detail)


class NotFound(ProviderError):
    """The named resource does not exist."""


class Conflict(ProviderError):
    """The resource exists already or changed underneath us (stale fingerprint)."""


class Throttled(ProviderError):
    """The API asked us to slow down; retried with backoff."""

    retryable = True


class Unavailable(ProviderError):
    """A transient server-side or network failure; retried with backoff."""

    retryable = True


class AccessDenied(ProviderError):
    """Permanent: the credentials lack a permission (the message names it)."""


class ProviderMissing(ProviderError):
    """The provider named in a spec is not installed (names the extra to install)."""
