"""The provider interface: the only place the product talks to a cloud.

A provider instance serves one account of one cloud. It observes live state in
bulk and performs single, idempotent mutations; the executor decides the order
(red/black) and every guard. Providers raise only ``reconciler.core.errors``
``ProviderError`` subclasses, with the call, account and region in the message.

Third-party clouds register a class under the ``reconciler.providers`` entry-point
group; the class needs a ``from_config(account, config, context)`` constructor
and may offer ``check_settings(account, config) -> [(field, message), ...]``,
which the config loader calls for every account so a typo is an error at load
(naming ``file:line``), not a surprise at the first pass.
"""

from __future__ import annotations

import difflib
import functools
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from reconciler.core import clock as clock_mod
from reconciler.core import errors, images, model
from reconciler.core.resources import Kind, LiveResource

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

ENTRY_POINT_GROUP = "reconciler.providers"

EXTRAS = {"aws": "aws", "gcp": "gcp", "azure": "azure", "cloudfoundry": "cloudfoundry"}
"""Provider name -> the pip extra that installs its SDK."""


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What every provider may use besides its own account config.

    ``open_database`` is the state layer's way in for a provider that keeps rows of its own
    beside the reconciler's state (the local provider's simulated cloud, GCP's per-group
    records): a new SQLAlchemy engine on ``state_url`` (SQLite or PostgreSQL, configured as the
    state store configures its own), so providers never import the store. The caller disposes it.
    """

    state_url: str
    state_dir: Path
    clock: clock_mod.Clock = field(default_factory=clock_mod.SystemClock)
    open_database: Callable[[], Engine] = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A new server group, fully described; ``tags`` carry ownership and provenance."""

    name: str
    application: str
    cluster: str
    region: str
    launch: model.LaunchSpec
    capacity: model.Capacity
    spec_hash: str
    commit: str
    autoscaling: bool = False

    def ownership_tags(self) -> dict[str, str]:
        return {
            model.TAG_MANAGED_BY: model.MANAGED_BY,
            model.TAG_APPLICATION: self.application,
            model.TAG_CLUSTER: self.cluster,
            model.TAG_SPEC_HASH: self.spec_hash,
            model.TAG_COMMIT: self.commit,
        }


@runtime_checkable
class Provider(Protocol):
    """One account of one cloud.

    Contract for every method that mutates:
    * idempotent: creating a group that already exists with our tags returns it;
      disabling a disabled group, resizing to the current size, destroying a group
      that is gone are no-ops;
    * refuses (``errors.Conflict``) to mutate a group without our ownership tags.
    """

    name: str
    account: str

    def regions(self) -> tuple[str, ...]:
        """Regions this account may use (empty: any region a spec names)."""

    def list_server_groups(self, region: str) -> list[model.ServerGroup]:
        """Every server group in the region (bulk, paginated), managed or not."""

    def health(self, region: str, name: str) -> model.Health:
        """Healthy / desired / instance counts for one group (what waits observe)."""

    def create_server_group(self, request: CreateRequest) -> model.ServerGroup:
        """Create the group at ``request.capacity``, out of traffic.

        Where the cloud's load balancer health-checks its targets the provider
        may attach at creation (traffic reaches only healthy instances).
        """

    def enable(self, region: str, name: str) -> None:
        """Put the group into traffic and resume scaling."""

    def disable(self, region: str, name: str) -> None:
        """Take the group out of traffic and suspend scaling."""

    def resize(self, region: str, name: str, capacity: model.Capacity) -> None:
        """Set min/desired/max in place."""

    def destroy(self, region: str, name: str) -> None:
        """Delete an owned group and what was made for it (launch template, …)."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True, slots=True)
class ResourceRequest:
    """A load balancer or security group to create, or to update in place to exactly this (``update``)."""

    kind: Kind
    name: str
    application: str
    region: str
    settings: tuple[tuple[str, str], ...]
    rules: tuple[str, ...]  # Rule.line() texts
    spec_hash: str
    commit: str
    update: bool = False

    def ownership_tags(self) -> dict[str, str]:
        return {model.TAG_MANAGED_BY: model.MANAGED_BY, model.TAG_APPLICATION: self.application,
                model.TAG_SPEC_HASH: self.spec_hash, model.TAG_COMMIT: self.commit}


@runtime_checkable
class ResourceProvider(Protocol):
    """A provider that also manages load balancers and security groups (see docs/resources.md).

    The same contract as for groups: bulk reads; idempotent mutations; never a change to a resource
    without our ownership tags; ``destroy_resource`` refuses (``errors.Conflict``) while a group uses it.
    """

    def list_resources(self, region: str) -> list[LiveResource]:
        """Every balancer and security group in the region (bulk, paginated), managed or not."""

    def put_resource(self, request: ResourceRequest) -> None:
        """Create the resource, or update our own in place (settings and rules exactly as requested)."""

    def destroy_resource(self, region: str, kind: Kind, name: str) -> None:
        """Delete our own resource; a resource that is gone is a no-op."""


@runtime_checkable
class ImageProvider(Protocol):
    """A provider that can find images by pattern (``image: {name: ..., newest: true}``, docs/environments.md).

    It returns the region's candidates for the pattern (pre-filtered by the cloud where it can, in one
    paginated call); the core decides which one the region runs (``reconciler.core.images.choose``).
    """

    def find_images(self, region: str, pattern: images.ImagePattern) -> list[images.Image]:
        """Images in ``region`` that may match ``pattern`` (bulk); an empty list when none do."""


def installed_names() -> frozenset[str]:
    """Names registered under the entry-point group (nothing is imported: a missing extra still counts)."""
    return _installed(tuple(sys.path))


@functools.lru_cache(maxsize=8)
def _installed(_path: tuple[str, ...]) -> frozenset[str]:
    return frozenset(ep.name for ep in _entry_points(_path))


@functools.lru_cache(maxsize=8)
def _entry_points(_path: tuple[str, ...]) -> tuple[metadata.EntryPoint, ...]:
    """Scanning every installed distribution takes ~50 ms (each CLI command loads a config): once per
    ``sys.path``, so a plugin made importable by a new path entry is seen."""
    return tuple(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_provider_class(name: str) -> Any:
    """The class registered for ``name``; a clear error names the extra to install."""
    eps = _entry_points(tuple(sys.path))
    matches = [ep for ep in eps if ep.name == name]
    if not matches:
        known = ", ".join(sorted({ep.name for ep in eps})) or "none"
        raise errors.ProviderMissing(
            f"no provider named {name!r} is installed (installed: {known}); "
            "a plugin registers one under the 'reconciler.providers' entry-point group",
            provider=name,
        )
    try:
        return matches[0].load()
    except ImportError as exc:
        extra = EXTRAS.get(name, name)
        raise errors.ProviderMissing(
            f"provider {name!r} needs extra packages: pip install 'reconciler[{extra}]' "
            f"({exc})",
            provider=name,
        ) from exc


def make_provider(
    name: str, account: str, config: Mapping[str, Any], context: ProviderContext
) -> Provider:
    cls = load_provider_class(name)
    provider: Provider = cls.from_config(account, config, context)
    return provider


SettingsProblem = tuple[str, str]
"""A problem in one account's settings: (field path under the account, e.g. ``faults.rate``; message)."""


def check_account(name: str, account: str, config: Mapping[str, Any]) -> list[SettingsProblem]:
    """The provider's own check of one account's settings; builds no client and calls no cloud.

    An unknown provider raises ``ProviderMissing``; one whose extra is not installed is not checked
    here (its clusters report the missing extra when they are planned).
    """
    if name not in installed_names():
        load_provider_class(name)  # raises, listing the installed ones
    try:
        cls = load_provider_class(name)
    except errors.ProviderMissing:
        return []
    check = getattr(cls, "check_settings", None)
    if check is None:
        return []
    return [(str(f), str(m)) for f, m in check(account, config)]


def raise_problems(provider: str, account: str, problems: list[SettingsProblem]) -> None:
    """For ``from_config``: the problems ``check_settings`` found, as one ``ConfigError``."""
    if problems:
        where = f"providers.{provider}.accounts.{account}"
        raise errors.ConfigError("; ".join(f"{where}{'.' + f if f else ''}: {m}" for f, m in problems))


class SettingsCheck:
    """Typed checks of one account's settings, collecting ``(field, message)`` problems."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.problems: list[SettingsProblem] = []

    def fail(self, fld: str, message: str) -> None:
        self.problems.append((fld, message))

    def keys(self, allowed: set[str]) -> None:
        for key in sorted(map(str, self.config)):
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {near[0]}? " if near else ""
                self.fail(key, f"unknown field; {hint}allowed: {', '.join(sorted(allowed))}")

    def number(self, key: str, *, low: float | None = None, high: float | None = None,
               whole: bool = False) -> None:
        value = self.config.get(key)
        if value is None:
            return
        kind = "a whole number" if whole else "a number"
        ok_type = isinstance(value, int) if whole else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            self.fail(key, f"expected {kind}, got {value!r}")
        elif (low is not None and value < low) or (high is not None and value > high):
            bounds = f"from {low} to {high}" if low is not None and high is not None else (
                f">= {low}" if low is not None else f"<= {high}")
            self.fail(key, f"must be {bounds}, got {value!r}")

    def text(self, key: str, *, required: bool = False) -> None:
        value = self.config.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected text, got {value!r}")

    def choice(self, key: str, options: tuple[str, ...]) -> None:
        value = self.config.get(key)
        if value is not None and value not in options:
            self.fail(key, f"{value!r}; use {' or '.join(options)}")

    def strings(self, key: str, *, example: str, allowed: set[str] | None = None) -> None:
        value = self.config.get(key)
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"expected a list of names, e.g. {example}; got {value!r}")
        elif allowed is not None and set(value) - allowed:
            self.fail(key, f"unknown {sorted(set(value) - allowed)}; allowed: {', '.join(sorted(allowed))}")

    def string_lists(self, key: str, *, example: str) -> None:
        """A mapping of name -> list of names (subnets or zones per region)."""
        value = self.config.get(key)
        if value is None:
            return
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) and x for x in v)
                for k, v in value.items()):
            self.fail(key, f"expected a mapping of region to a list of names, e.g. {example}; got {value!r}")


def owned(group: model.ServerGroup) -> bool:
    return group.managed


def tags_say_managed(tags: Mapping[str, str]) -> bool:
    return tags.get(model.TAG_MANAGED_BY) == model.MANAGED_BY
