"""Load balancers and security groups declared in specs, as values: desired, live, and the changes between.

A resource lives in one (provider, account, region) under a name, like a cluster; clusters refer to it by
that name (``clusters[].load_balancers`` / ``security_groups``). Settings travel as flat ``field -> text``
pairs (``health_check.path: /health``) and rules as canonical one-line texts, so diffs, previews and
providers all read the same shape. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from reconciler.core import model


class Kind(enum.StrEnum):
    LOAD_BALANCER = "load_balancer"
    SECURITY_GROUP = "security_group"

    @property
    def label(self) -> str:
        return "load balancer" if self is Kind.LOAD_BALANCER else "security group"

    @property
    def spec_field(self) -> str:
        """The spec key that declares it (and the cluster key that names it)."""
        return "load_balancers" if self is Kind.LOAD_BALANCER else "security_groups"


class ResourceAction(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"


Placement = tuple[str, str, str]
"""(provider, account, region)."""

GLOBAL = "global"
"""The region of a resource that belongs to a whole account: GCE firewall rules and global backend services."""

GLOBAL_PROVIDERS = frozenset({"gcp"})
"""Providers with account-wide resources: there a spec's resource without ``regions`` lives at ``GLOBAL``, and a
group in any region of the account may use it."""


def places_of(provider: str, account: str, region: str) -> tuple[Placement, ...]:
    """Where a resource named by a group in ``region`` may live: the region, and the account's global placement
    on a provider that has one."""
    if provider in GLOBAL_PROVIDERS and region != GLOBAL:
        return (provider, account, region), (provider, account, GLOBAL)
    return ((provider, account, region),)


def serves(placement: Placement, provider: str, account: str, region: str) -> bool:
    """Can a group in (provider, account, region) use a resource at ``placement``?"""
    return placement in places_of(provider, account, region)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ingress rule: ``tcp 443 from 0.0.0.0/0`` or ``tcp 8080 from group checkout-lb``."""

    protocol: str
    ports: str  # "443", "8080-8081" or "all"
    cidr: str = ""
    group: str = ""

    def line(self) -> str:
        return f"{self.protocol} {self.ports} from " + (f"group {self.group}" if self.group else self.cidr)

    def port_range(self) -> tuple[int, int]:
        if self.ports == "all":
            return 0, 65535
        low, _, high = self.ports.partition("-")
        return int(low), int(high or low)

    def covers(self, other: Rule) -> bool:
        """Does this rule let through everything ``other`` does (same source, wider or equal ports)?"""
        if (self.cidr, self.group) != (other.cidr, other.group):
            return False
        if self.protocol not in (other.protocol, "all"):
            return False
        a, b = self.port_range(), other.port_range()
        return a[0] <= b[0] and b[1] <= a[1]

    @staticmethod
    def parse(line: str) -> Rule:
        """The inverse of ``line`` (providers that keep rules as text)."""
        protocol, ports, _from, *source = line.split(" ")
        if source[0] == "group":
            return Rule(protocol, ports, group=source[1])
        return Rule(protocol, ports, cidr=source[0])


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One declared load balancer or security group, with every default filled in."""

    kind: Kind
    name: str
    application: str
    placements: tuple[Placement, ...]
    settings: tuple[tuple[str, str], ...] = ()
    rules: tuple[Rule, ...] = ()
    source: model.SourceRef = field(default_factory=lambda: model.SourceRef(""))
    path: str = ""  # where it is declared, e.g. ``security_groups[0]`` (for error messages)
    _hash: str = field(default="", init=False, repr=False, compare=False)
    _lines: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def spec_hash(self) -> str:
        """Stored on what we create: a live resource whose hash matches but whose fields differ was edited by hand.
        Computed once (a plan asks for it per region)."""
        if not self._hash:
            payload = json.dumps({"kind": self.kind.value, "settings": sorted(self.settings),
                                  "rules": list(self.rule_lines())}, separators=(",", ":"))
            object.__setattr__(self, "_hash", hashlib.sha256(payload.encode()).hexdigest()[:16])
        return self._hash

    def rule_lines(self) -> tuple[str, ...]:
        if self._lines is None:
            object.__setattr__(self, "_lines", tuple(sorted(r.line() for r in self.rules)))
        assert self._lines is not None
        return self._lines


@dataclass(frozen=True, slots=True)
class LiveResource:
    """A resource as a provider reports it; ``managed`` only with our ownership tags."""

    kind: Kind
    name: str
    provider: str
    account: str
    region: str
    managed: bool
    application: str = ""
    settings: tuple[tuple[str, str], ...] = ()
    rules: tuple[str, ...] = ()  # Rule.line() texts, sorted
    spec_hash: str = ""
    commit: str = ""
    aliases: tuple[str, ...] = ()
    """Other names the cloud knows it by, which clusters may use instead (an AWS security group's id)."""

    @property
    def placement(self) -> Placement:
        return self.provider, self.account, self.region

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "provider": self.provider, "account": self.account,
                "region": self.region, "managed": self.managed, "application": self.application,
                "settings": dict(self.settings), "rules": list(self.rules), "spec_hash": self.spec_hash}


@dataclass(frozen=True, slots=True)
class FieldDiff:
    field: str
    old: str | None
    new: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """Create, update in place or destroy one resource in one region."""

    kind: Kind
    name: str
    application: str
    provider: str
    account: str
    region: str
    action: ResourceAction
    fields: tuple[FieldDiff, ...] = ()
    rules_added: tuple[str, ...] = ()
    rules_removed: tuple[str, ...] = ()
    desired: ResourceSpec | None = None
    spec_hash: str = ""
    used_by: tuple[str, ...] = ()
    """Server groups (and security groups, by their rules) that use it now."""
    narrows: tuple[str, ...] = ()
    """Removed rules no remaining rule covers, while something uses the resource: serving traffic may need them."""
    reason: str = ""
    commit: str = ""
    verdicts: tuple[model.PolicyVerdict, ...] = ()
    after: tuple[str, ...] = ()
    """A destroy that waits for these cluster changes (keys) of the same plan: they destroy the last groups
    using the resource. It runs once they succeeded, in the same pass (``reconciler apply``, ``run --once``)."""
    _id: str = field(default="", init=False, repr=False, compare=False)
    _content_id: str = field(default="", init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Like a cluster key, with the kind before the name (leases, failures, executions)."""
        return model.cluster_key(self.provider, self.account, self.region, f"{self.kind.value}:{self.name}")

    @property
    def label(self) -> str:
        return f"{self.kind.label} {self.name}"

    @property
    def cluster(self) -> str:
        """The key's last part, ``security_group:NAME``: where a cluster change names its cluster (policies
        resolve ``clusters.<name>`` layers by it; history and executions show it)."""
        return f"{self.kind.value}:{self.name}"

    @property
    def verdict(self) -> model.Verdict:
        return model.Verdict.strictest([v.verdict for v in self.verdicts])

    @property
    def change_id(self) -> model.ChangeId:
        if not self._id:
            ids = model.content_ids(self.content())
            object.__setattr__(self, "_id", ids[0])
            object.__setattr__(self, "_content_id", ids[1])
        return model.ChangeId(self._id)

    @property
    def content_id(self) -> str:
        """The change id but for the commit (``model.Change.content_id``)."""
        if not self._content_id:
            self.change_id  # noqa: B018 - computes both
        return self._content_id

    def content(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "application": self.application,
                "provider": self.provider, "account": self.account, "region": self.region,
                "action": self.action.value, "commit": self.commit, "spec_hash": self.spec_hash,
                "fields": [f.as_dict() for f in self.fields], "rules_added": list(self.rules_added),
                "rules_removed": list(self.rules_removed), **({"after": list(self.after)} if self.after else {})}

    def describe(self) -> str:
        return f"{self.action.value} {self.label} in {self.region}"

    def diff_lines(self) -> list[str]:
        """Field diffs and rules as added/removed lines, for every preview format."""
        out = []
        for f in self.fields:
            if f.old is None:
                out.append(f"+ {f.field}: {f.new}")
            elif f.new is None:
                out.append(f"- {f.field}: {f.old}")
            else:
                out.append(f"~ {f.field}: {f.old} -> {f.new}")
        out += [f"+ ingress {r}" for r in self.rules_added]
        out += [f"- ingress {r}" for r in self.rules_removed]
        return out


def users_index(groups: tuple[model.ServerGroup, ...], resources: tuple[LiveResource, ...] = ()
                ) -> dict[tuple[Placement, Kind, str], tuple[str, ...]]:
    """Who uses what, for every resource at once, in one walk of the groups (a plan has thousands of them):
    server groups (ours or not) naming a resource, by name or by an alias, and security groups whose rules
    name another one."""
    alias = {(r.placement, r.kind, a): r.name for r in resources for a in r.aliases}
    out: dict[tuple[Placement, Kind, str], list[str]] = {}
    for g in groups:
        for place in places_of(g.provider, g.account, g.region):
            for kind, names in ((Kind.LOAD_BALANCER, g.launch.load_balancers),
                                (Kind.SECURITY_GROUP, g.launch.security_groups)):
                for n in names:
                    out.setdefault((place, kind, alias.get((place, kind, n), n)), []).append(g.name)
    for r in resources:
        if r.kind is Kind.SECURITY_GROUP:
            for ref in {Rule.parse(line).group for line in r.rules} - {"", r.name}:
                out.setdefault((r.placement, Kind.SECURITY_GROUP, ref), []).append(f"security group {r.name}")
    return {k: tuple(sorted(set(v))) for k, v in out.items()}


def used_by(kind: Kind, name: str, placement: Placement, groups: tuple[model.ServerGroup, ...],
            resources: tuple[LiveResource, ...] = ()) -> tuple[str, ...]:
    """Everything in ``placement`` (for a global one: in any region of its account) that uses the resource:
    what a destroy would break."""
    return users_index(tuple(g for g in groups if serves(placement, g.provider, g.account, g.region)),
                       tuple(r for r in resources if r.placement == placement)).get((placement, kind, name), ())
