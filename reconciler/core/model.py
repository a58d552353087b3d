"""The model every layer speaks: desired specs, live server groups, changes and plans.

Frozen, slotted dataclasses; raw YAML dicts never get past ``specs/``. Nothing
here performs I/O or reads a clock.

Why it is this long: it is the whole vocabulary, about forty small frozen types and enums (none over 75 lines)
that every layer imports; one module keeps them free of import cycles and lets a reader find any of them in
one place.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NewType

from reconciler.core import automation as automation_mod
from reconciler.core import canary as canary_mod
from reconciler.core import images as image_mod
from reconciler.core import jsontext

MANAGED_BY = "reconciler"
"""Value of the ``managed-by`` tag/label on every group the reconciler creates."""

TAG_MANAGED_BY = "managed-by"
TAG_APPLICATION = "application"
TAG_CLUSTER = "cluster"
TAG_SPEC_HASH = "spec-hash"
TAG_COMMIT = "commit"

ServerGroupName = NewType("ServerGroupName", str)
ChangeId = NewType("ChangeId", str)

_VERSION_RE = re.compile(r"^(?P<cluster>.+)-v(?P<version>\d{3})$")


class Criticality(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    CRITICAL = "critical"


class Action(enum.StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    RESIZE = "resize"
    DESTROY = "destroy"
    ROLLBACK = "rollback"


class Verdict(enum.StrEnum):
    """Ordered from most to least permissive; ``strictest`` picks the maximum."""

    ALLOW = "allow"
    WARN = "warn"
    APPROVE = "approve"
    DENY = "deny"

    @property
    def rank(self) -> int:
        return _VERDICT_RANK[self]

    @staticmethod
    def strictest(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict:
        # by identity, not ``max`` by rank: an enum member's hash is a Python call, and status asks this
        # of every change of a fleet's plan (20,000 of them) several times
        best = Verdict.ALLOW
        for v in verdicts:
            if v is Verdict.DENY:
                return v
            if v is Verdict.APPROVE or (v is Verdict.WARN and best is Verdict.ALLOW):
                best = v
        return best


_VERDICT_RANK = {Verdict.ALLOW: 0, Verdict.WARN: 1, Verdict.APPROVE: 2, Verdict.DENY: 3}


class Removal(enum.StrEnum):
    """Why a cluster's groups are destroyed, which decides how carefully (see docs/safety.md)."""

    MOVED = "moved"  # the application keeps other clusters in the region: destroyed after they serve
    APP_REMOVED = "app_removed"  # the application's file was removed from Git
    REGION_REMOVED = "region_removed"  # the application is in Git but has no cluster left in the region


class Hold(enum.StrEnum):
    """Why a planned change does not run now (the prose is rendered at the edge, from ``Held``)."""

    DENIED = "denied"
    PLAN_DENIED = "plan_denied"
    APPROVAL = "approval"
    RUNNING = "running"
    BACKOFF = "backoff"
    WAVE = "wave"  # an earlier wave has not succeeded with this spec
    REPLACEMENT = "replacement"  # the clusters replacing a destroyed one do not serve yet
    RESOURCE = "resource"  # a load balancer or security group it names was not created
    FREED = "freed"  # a resource destroy waiting for cluster changes that do not run now to free it
    # environments (reconciler.core.environments): the version may not enter this environment yet
    BAD_VERSION = "bad_version"  # it failed in an earlier environment
    DEPENDS_ON = "depends_on"  # an earlier environment does not run it healthy
    SOAK = "soak"  # it has not run healthy there long enough
    ALLOWED_TIMES = "allowed_times"  # outside the environment's allowed times
    ENV_APPROVAL = "env_approval"  # waiting for an approval of (application, environment, version)
    REJECTED = "rejected"  # its approval was refused or timed out
    APP_DEPENDENCY = "app_depends_on"  # another application's change there has not succeeded yet
    SCHEDULE = "schedule"  # every other constraint passed; it enters at the environment's next scheduled time
    MAX_CONCURRENT = "max_concurrent"  # the environment already takes the version in its max_concurrent regions


class SkipKind(enum.StrEnum):
    """Why the planner made no change where live and desired differ."""

    UNREADABLE = "unreadable"
    PAUSED = "paused"
    STALLED = "stalled"
    PRUNE_OFF = "prune_off"
    BROKEN_SPECS = "broken_specs"
    UNREAD_FILE = "unread_file"
    IN_USE = "in_use"  # a resource no longer declared that something still uses
    UNOWNED = "unowned"  # a declared resource exists without our ownership tags
    CONFLICT = "conflict"  # a resource declared twice, or owned by another application
    IMAGE = "image"  # the cluster's image pattern did not resolve in the region (a spec problem says why)


@dataclass(frozen=True, slots=True)
class Held:
    """A hold on one change: its kind for code, its message for people."""

    kind: Hold
    message: str
    waits_for: str = ""
    """What would release it (environments: ``staging healthy at 1.4.2 for 30m``)."""
    until: float | None = None
    """When it ends by itself, if known (epoch seconds): a soak's end, a window's opening."""
    command: str = ""
    """What a person runs to release it, when one can (``reconciler approve APP --env ENV --version V``)."""

    def __str__(self) -> str:
        return self.message


class ExecState(enum.StrEnum):
    """How an execution (one change in one region) stands; stored, shown by ``history`` and the API."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"  # a step failed and the change was undone; the previous group serves
    INTERRUPTED = "interrupted"  # the process stopped or died; the next pass continues from live state
    ABANDONED = "abandoned"  # its process stopped renewing the lease; another execution continued
    SKIPPED = "skipped"  # not started (a lease held elsewhere, an earlier wave failed, replacements missing)
    FENCED = "fenced"  # several replicas: its claim moved to another replica, which continues (never stored)


ACTIVE_STATES = (ExecState.PENDING, ExecState.RUNNING)
"""Execution states that still belong to a living process (or to one that died without ending them)."""


class StepState(enum.StrEnum):
    """How one step of an execution stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StepKind(enum.StrEnum):
    CREATE = "create"  # create the server group, out of traffic unless the LB health-checks
    WAIT_HEALTHY = "wait_healthy"  # wait until healthy_percent of desired is healthy
    ENABLE = "enable"  # put into traffic, resume scaling
    DISABLE = "disable"  # take out of traffic, suspend scaling (traffic-guarded)
    RESIZE = "resize"  # set min/desired/max
    DELAY = "delay"  # a plain pause (delay_before_disable, scale-down, wave pause)
    DESTROY = "destroy"  # delete an owned group
    VERIFY = "verify"  # ask a configured verification endpoint (``reason``: its name) for a verdict
    BASELINE = "baseline"  # create a canary's baseline: a group of the serving version (``reason``: its name)
    ANALYZE = "analyze"  # judge a canary against its baseline (``reason``: the baseline; empty: none)
    JUDGMENT = "judgment"  # a person's go-ahead (policies/manual_judgment.py holds the change for an approval)


# --------------------------------------------------------------------------- desired


@dataclass(frozen=True, slots=True)
class Capacity:
    min: int
    desired: int
    max: int

    def clamp(self, desired: int) -> Capacity:
        """This capacity with ``desired`` moved inside [min, max]."""
        return Capacity(self.min, max(self.min, min(self.max, desired)), self.max)

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "desired": self.desired, "max": self.max}


@dataclass(frozen=True, slots=True)
class HealthSpec:
    healthy_percent: int = 100
    timeout_s: float = 600.0


class StrategyType(enum.StrEnum):
    """How a new server group takes over from the serving ones (docs/strategies.md)."""

    RED_BLACK = "red_black"  # full size, then all traffic at once; the previous group is retained
    HIGHLANDER = "highlander"  # red/black, then every older group is destroyed (no rollback target)
    ROLLING_RED_BLACK = "rolling_red_black"  # grow the new and shrink the old in percentage steps
    CANARY = "canary"  # canary and baseline groups judged by metric analysis, then ``canary.then``


@dataclass(frozen=True, slots=True)
class Strategy:
    keep_disabled: int = 1
    scale_down: bool = True
    delay_before_disable_s: float = 0.0
    delay_before_scale_down_s: float = 0.0
    rollback_on_failure: bool = True
    type: StrategyType = StrategyType.RED_BLACK
    steps: tuple[int, ...] = (100,)
    """Rolling only: percent of the target capacity after each step, increasing, ending at 100."""
    pause_s: float = 0.0
    """Rolling only: pause after each step but the last."""
    approval_steps: tuple[int, ...] = ()
    """Rolling only: the steps (percents) after which the rollout waits for ``reconciler approve``."""
    verify: tuple[str, ...] = ()
    """Names of verification endpoints (config ``verify``) asked before the old groups leave traffic."""
    canary: canary_mod.Canary | None = None
    """Canary only: its groups' size, duration, metrics and thresholds (``core/canary.py``)."""


@dataclass(frozen=True, slots=True)
class Rollout:
    waves: tuple[tuple[str, ...], ...] = ()
    pause_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a value came from, for error messages and plan links.

    ``fields`` holds the lines of a few fields checked after loading (provider,
    account, regions) as ``(field path, line)`` pairs, so late checks still name
    ``file:line: clusters[0].provider``.
    """

    file: str
    line: int = 0
    fields: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def line_of(self, path: str) -> int:
        return next((n for p, n in self.fields if p == path), self.line)


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything immutable about a server group: a change to any of it means a new group."""

    image: str
    instance_type: str
    user_data: str = ""
    security_groups: tuple[str, ...] = ()
    load_balancers: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def spec_hash(self) -> str:
        """Stable short hash of the immutable fields; stored on every group we create."""
        try:
            return _launch_hash(self)
        except TypeError:  # a list among the fields (a value not built by the loader): not cacheable
            return self._hash_now()

    def _hash_now(self) -> str:
        payload = json.dumps(
            {
                "image": self.image,
                "instance_type": self.instance_type,
                "user_data": self.user_data,
                "security_groups": sorted(self.security_groups),
                "load_balancers": sorted(self.load_balancers),
                "tags": sorted(self.tags),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]



@functools.lru_cache(maxsize=1 << 16)
def _launch_hash(launch: LaunchSpec) -> str:
    """Each spec hashed once while it is in use: every pass plans every cluster with the same specs (a
    frozen value hashes and compares by its fields, so an equal launch spec has the same hash)."""
    return launch._hash_now()


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    application: str
    provider: str
    account: str
    regions: tuple[str, ...]
    launch: LaunchSpec
    capacity: Capacity
    stack: str = ""
    detail: str = ""
    autoscaling: bool = False
    health: HealthSpec = field(default_factory=HealthSpec)
    strategy: Strategy = field(default_factory=Strategy)
    rollout: Rollout = field(default_factory=Rollout)
    source: SourceRef = field(default_factory=lambda: SourceRef(""))
    environment: str = ""  # the environment it belongs to (reconciler.core.environments); empty: none
    image_pattern: image_mod.ImagePattern | None = None
    """The image by pattern (``launch.image`` then only shows it); each region runs what it resolved to."""
    images: tuple[tuple[str, image_mod.Image], ...] = ()
    """Region -> the image the pattern resolved to there (``runtime/images.py``); a region missing is held."""

    @property
    def name(self) -> str:
        return cluster_name(self.application, self.stack, self.detail)

    def resolved(self, region: str) -> image_mod.Image | None:
        """The image the pattern resolved to in ``region`` (None: no pattern, or it did not resolve)."""
        return next((img for r, img in self.images if r == region), None)

    def for_region(self, region: str) -> ClusterSpec:
        """This spec as ``region`` runs it: with the image its pattern resolved to there."""
        img = self.resolved(region)
        if img is None or img.id == self.launch.image:
            return self
        return replace(self, launch=replace(self.launch, image=img.id))

    @property
    def waves(self) -> tuple[tuple[str, ...], ...]:
        """Region waves; default is the first region alone, then the rest (DESIGN §4)."""
        if self.rollout.waves:
            return self.rollout.waves
        if len(self.regions) <= 1:
            return (self.regions,)
        return ((self.regions[0],), self.regions[1:])


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """One allowed time of an environment, in the deployment windows' terms (docs/policies.md)."""

    start: str  # "09:00"
    end: str  # "17:00" or "24:00"; not after start: overnight
    days: tuple[str, ...] = ()  # mon..sun; empty: every day
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One ``schedules`` entry of an environment: a five-field cron expression and its time zone."""

    cron: str
    timezone: str = "UTC"

    def describe(self) -> str:
        return self.cron if self.timezone == "UTC" else f"{self.cron} {self.timezone}"


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    timeout_s: float = 0.0  # 0: waits as long as it takes


@dataclass(frozen=True, slots=True)
class VersionSource:
    """Where the version is written, for ``reconciler promote``: a dotted key of ``file``."""

    file: str
    key: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Environment:
    """A stage of an application's delivery path; its clusters carry its name (``ClusterSpec.environment``)."""

    name: str
    depends_on: tuple[str, ...] = ()
    soak_s: float = 0.0
    allowed_times: tuple[TimeWindow, ...] = ()
    approval: ApprovalRule | None = None
    version: str = ""  # its own pin; empty: the application's version
    version_source: VersionSource | None = None
    schedules: tuple[Schedule, ...] = ()  # cron times a waiting version may enter at (core/schedules.py)
    max_concurrent: int = 0  # at most this many regions take a new version at a time; 0: no limit
    automation: automation_mod.ImageAutomation | None = None  # commits newer images' versions to its own version


@dataclass(frozen=True, slots=True)
class Dependency:
    """``depends_on: [{application, environment}]``: that application's change there must succeed first."""

    application: str
    environment: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    owner: str
    criticality: Criticality
    clusters: tuple[ClusterSpec, ...]
    source: SourceRef
    resources: tuple[Any, ...] = ()  # reconciler.core.resources.ResourceSpec: load balancers, security groups
    version: str = ""
    version_source: VersionSource | None = None
    environments: tuple[Environment, ...] = ()
    depends_on: tuple[Dependency, ...] = ()
    automation: automation_mod.ImageAutomation | None = None  # commit newer images' versions (docs/environments.md)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What Git says at one commit, plus the problems found while reading it.

    ``broken_files`` lists spec files that did not render or validate: their
    applications keep their last live state (nothing is planned for them and
    nothing anywhere is pruned while any file is broken).
    """

    commit: str
    applications: Mapping[str, Application]
    problems: tuple[Any, ...] = ()  # reconciler.core.errors.SpecProblem
    broken_files: frozenset[str] = frozenset()
    notices: tuple[Any, ...] = ()  # SpecProblem values that do not break a file (files not read)
    unread_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Files under the spec path that are not specs -> applications they may define (``*``: any).
    Pruning is held for those applications: a renamed ``.yaml.bak`` must not look like a deletion."""

    def clusters(self) -> list[ClusterSpec]:
        return [c for app in self.applications.values() for c in app.clusters]


# --------------------------------------------------------------------------- live


@dataclass(frozen=True, slots=True)
class ServerGroup:
    """One live server group as a provider reports it."""

    name: str
    provider: str
    account: str
    region: str
    cluster: str
    application: str
    managed: bool
    launch: LaunchSpec
    capacity: Capacity
    enabled: bool
    healthy: int
    instances: int
    spec_hash: str = ""
    commit: str = ""
    created_at: float = 0.0
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def version(self) -> int:
        return parse_version(self.name)

    def view(self) -> dict[str, Any]:
        return {
            "server_group": self.name,
            "image": self.launch.image,
            "instance_type": self.launch.instance_type,
            "capacity": self.capacity.as_dict(),
            "enabled": self.enabled,
            "healthy": self.healthy,
            "instances": self.instances,
            "spec_hash": self.spec_hash,
        }


@dataclass(frozen=True, slots=True)
class Health:
    healthy: int
    desired: int
    instances: int

    def satisfies(self, percent: int) -> bool:
        if self.desired == 0:
            return True
        return self.healthy * 100 >= percent * self.desired


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    server_group: str
    capacity: Capacity | None = None
    seconds: float = 0.0
    healthy_percent: int = 100
    reason: str = ""
    percent: int = 0
    """The rolling step this step belongs to (percent of the target capacity); 0 outside rolling."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "server_group": self.server_group}
        if self.capacity is not None:
            out["capacity"] = self.capacity.as_dict()
        if self.kind in (StepKind.DELAY, StepKind.WAIT_HEALTHY, StepKind.ANALYZE):
            out["seconds"] = self.seconds
        if self.kind is StepKind.WAIT_HEALTHY:
            out["healthy_percent"] = self.healthy_percent
        if self.reason:
            out["reason"] = self.reason
        if self.percent:
            out["percent"] = self.percent
        return out

    def describe(self) -> str:
        text = self._describe()
        return f"{text} [rolling step {self.percent}%]" if self.percent else text

    def _describe(self) -> str:
        if self.kind is StepKind.CREATE and self.capacity is not None:
            c = self.capacity
            return f"create {self.server_group} (min {c.min}, desired {c.desired}, max {c.max})"
        if self.kind is StepKind.RESIZE and self.capacity is not None:
            c = self.capacity
            return f"resize {self.server_group} to min {c.min}, desired {c.desired}, max {c.max}"
        if self.kind is StepKind.WAIT_HEALTHY:
            return (
                f"wait until {self.healthy_percent}% of {self.server_group} is healthy "
                f"(timeout {_fmt_seconds(self.seconds)})"
            )
        if self.kind is StepKind.DELAY:
            return f"wait {_fmt_seconds(self.seconds)} ({self.reason or 'delay'})"
        if self.kind is StepKind.BASELINE and self.capacity is not None:
            return (f"create baseline {self.server_group} of the serving version ({self.reason}) at desired "
                    f"{self.capacity.desired}")
        if self.kind is StepKind.ANALYZE:
            against = (f"against baseline {self.reason}" if self.reason else
                       "without a baseline, out of traffic (nothing served before: comparisons skipped)")
            return f"analyze canary {self.server_group} {against} for {_fmt_seconds(self.seconds)}"
        if self.kind is StepKind.JUDGMENT:
            if self.percent:  # rolling: after a step (core/strategies/rolling.py)
                return (f"manual judgment: {self.server_group} is healthy at the {self.percent}% step; "
                        f"continues once approved")
            return f"manual judgment: {self.server_group} passed its analysis; continues once approved"
        if self.kind is StepKind.VERIFY:
            return (f"verify {self.server_group} with {self.reason} (POST; 2xx passes, 4xx, 5xx or no answer "
                    f"fails)")
        return f"{self.kind.value} {self.server_group}"


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    policy: str
    verdict: Verdict
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"policy": self.policy, "verdict": self.verdict.value, "message": self.message}


@dataclass(frozen=True, slots=True)
class Change:
    """One (application, cluster, provider, account, region) that must change."""

    application: str
    cluster: str
    provider: str
    account: str
    region: str
    action: Action
    steps: tuple[Step, ...]
    current: ServerGroup | None = None
    desired_server_group: str | None = None
    desired: ClusterSpec | None = None
    spec_hash: str = ""
    wave: int = 0
    reason: str = ""
    verdicts: tuple[PolicyVerdict, ...] = ()
    commit: str = ""
    after: tuple[str, ...] = ()
    """Cluster keys (provider/account/region/cluster) that must serve before this change runs: the
    earlier waves of the same cluster (serving this spec), or the clusters replacing a destroyed one."""
    waiting: tuple[str, ...] = ()
    """The part of ``after`` that did not serve when the plan was made."""
    removal: Removal | None = None
    restore: tuple[tuple[str, Capacity], ...] = ()
    """Rolling: the capacity each older serving group had before the deployment began; a failure returns
    them to it before the new group is removed. Derived from live state and the store, like ``after``."""
    _id: str = field(default="", init=False, repr=False, compare=False)
    _content_id: str = field(default="", init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.account}/{self.region}/{self.cluster}"

    @property
    def change_id(self) -> ChangeId:
        """Hash of the change's content (not its verdicts): stable across re-plans. Computed once."""
        if not self._id:
            ids = content_ids(self.content())
            object.__setattr__(self, "_id", ids[0])
            object.__setattr__(self, "_content_id", ids[1])
        return ChangeId(self._id)

    @property
    def content_id(self) -> str:
        """The change id but for the commit: the same on every commit while the change stays what it is
        (another file changed). Held changes are announced once per content id (``notifications.history``)."""
        if not self._content_id:
            self.change_id  # noqa: B018 - computes both
        return self._content_id

    @property
    def verdict(self) -> Verdict:
        return Verdict.strictest([v.verdict for v in self.verdicts])

    def content(self) -> dict[str, Any]:
        """What the change id hashes. Desired capacity owned by an autoscaler is left out: it moves on
        its own, and a reviewed plan or an approval must not go stale because of it. ``after`` and
        ``waiting`` are left out too: they follow rollout progress, not what the change does."""
        autoscaled = self.desired is not None and self.desired.autoscaling
        steps = [s.as_dict() for s in self.steps]
        current = _stable_view(self.current)
        if autoscaled:
            for step in steps:
                if "capacity" in step:
                    step["capacity"]["desired"] = None
            if current is not None:
                current["capacity"]["desired"] = None
        return {
            "application": self.application,
            "cluster": self.cluster,
            "provider": self.provider,
            "account": self.account,
            "region": self.region,
            "action": self.action.value,
            "commit": self.commit,
            "current": current,
            "desired_server_group": self.desired_server_group,
            "spec_hash": self.spec_hash,
            "desired": desired_view(self.desired),
            "wave": self.wave,
            "steps": steps,
        }


def with_verdicts(change: Any, verdicts: tuple[PolicyVerdict, ...]) -> Any:
    """``change`` (a cluster or resource change) with ``verdicts``, its id carried over: verdicts are not
    part of what the id hashes, and hashing every change of a fleet's plan again costs a second."""
    judged = replaced(change, "verdicts", verdicts)
    object.__setattr__(judged, "_id", change._id)
    object.__setattr__(judged, "_content_id", change._content_id)
    return judged


_MARK = json.dumps("\x00commit\x00")
"""Where the commit goes in a change's encoded content (NUL is in no name, and a value holding it is detected)."""
_KEY = '"commit":'
_CANONICAL = functools.partial(jsontext.compact, allow_nan=True)
"""``json.dumps(value, sort_keys=True, separators=(",", ":"))``, the text ids hash, by msgspec where it can."""


def content_ids(content: dict[str, Any]) -> tuple[str, str]:
    """(change id, content id) of a change's ``content()``: the id hashes its canonical JSON, the content id
    the same JSON without the top-level ``commit``. One encoding serves both: the content is encoded with a
    mark for its commit, which is then put in, or taken out with its comma. ``content`` is written to."""
    commit = content["commit"]
    content["commit"] = "\x00commit\x00"
    text = _CANONICAL(content)
    at = text.find(_MARK)
    if text.find(_MARK, at + 1) != -1:  # some value holds the mark too: encode the two forms apart
        content["commit"] = commit
        rest = {k: v for k, v in content.items() if k != "commit"}
        return (hashlib.sha256(_CANONICAL(content).encode()).hexdigest()[:12],
                hashlib.sha256(_CANONICAL(rest).encode()).hexdigest()[:12])
    start, end = at - len(_KEY), at + len(_MARK)  # the top-level "commit":MARK, the only place the mark is
    put = f'"{commit}"' if commit.isascii() and commit.isalnum() else json.dumps(commit)  # a hex commit, or any
    full = text[:at] + put + text[end:]
    if text[start - 1] == ",":
        without = text[:start - 1] + text[end:]
    elif text[end] == ",":
        without = text[:start] + text[end + 1:]
    else:
        without = "{}"
    return hashlib.sha256(full.encode()).hexdigest()[:12], hashlib.sha256(without.encode()).hexdigest()[:12]


_POSITIONS: dict[tuple[type, str], tuple[Any, int]] = {}


def replaced(value: Any, name: str, new: Any) -> Any:
    """``dataclasses.replace(value, name=new)`` as one positional call: ``replace`` builds keyword arguments
    field by field in Python, and a fleet's plan copies 20,000 changes several times a pass."""
    entry = _POSITIONS.get((type(value), name))
    if entry is None:
        names = [f.name for f in dataclasses.fields(value) if f.init]
        get = operator.attrgetter(*names) if len(names) > 1 else (lambda v: (getattr(v, names[0]),))
        entry = _POSITIONS[(type(value), name)] = (get, names.index(name))
    args = list(entry[0](value))
    args[entry[1]] = new
    return type(value)(*args)


@dataclass(frozen=True, slots=True)
class Plan:
    commit: str
    changes: tuple[Change, ...]
    problems: tuple[Any, ...] = ()  # SpecProblem values from the spec tree
    notices: tuple[Any, ...] = ()  # SpecProblem values for files under the spec path that are not read
    base_commit: str = ""
    live_fingerprint: str = ""
    plan_verdicts: tuple[PolicyVerdict, ...] = ()
    resource_changes: tuple[Any, ...] = ()  # reconciler.core.resources.ResourceChange, run before the clusters
    _id: str = field(default="", init=False, repr=False, compare=False)

    @property
    def verdict(self) -> Verdict:
        return Verdict.strictest(
            [c.verdict for c in self.changes] + [v.verdict for v in self.plan_verdicts]
            + [r.verdict for r in self.resource_changes]
        )

    @property
    def plan_id(self) -> str:
        """Hash of the canonical content: same inputs, same id (verdicts excluded). Computed once."""
        if not self._id:
            content: dict[str, Any] = {"commit": self.commit, "base_commit": self.base_commit,
                                       "changes": [c.change_id for c in self.changes]}
            if self.resource_changes:  # only then: plan ids of plans without resources stay as they were
                content["resource_changes"] = [r.change_id for r in self.resource_changes]
            payload = json.dumps(content, sort_keys=True, separators=(",", ":"))
            object.__setattr__(self, "_id", hashlib.sha256(payload.encode()).hexdigest()[:16])
        return self._id


# --------------------------------------------------------------------------- naming


def cluster_key(provider: str, account: str, region: str, cluster: str) -> str:
    """The key of one cluster in one region, as ``Change.key`` spells it."""
    return f"{provider}/{account}/{region}/{cluster}"


def split_key(key: str) -> tuple[str, str, str, str]:
    """(provider, account, region, cluster) of a key made by ``cluster_key``."""
    provider, rest = key.split("/", 1)
    account, region, cluster = rest.rsplit("/", 2)
    return provider, account, region, cluster


def cluster_name(application: str, stack: str = "", detail: str = "") -> str:
    """Frigga naming: ``app``, ``app-stack``, ``app-stack-detail`` or ``app--detail``."""
    if detail:
        return f"{application}-{stack}-{detail}"
    if stack:
        return f"{application}-{stack}"
    return application


def server_group_name(cluster: str, version: int) -> str:
    return f"{cluster}-v{version % 1000:03d}"


def parse_version(name: str) -> int:
    """The ``NNN`` of ``cluster-vNNN``; -1 for a name without a version."""
    m = _VERSION_RE.match(name)
    return int(m.group("version")) if m else -1


def cluster_of(name: str) -> str:
    m = _VERSION_RE.match(name)
    return m.group("cluster") if m else name


def desired_view(spec: ClusterSpec | None) -> dict[str, Any] | None:
    """The reviewable fields of a spec (user data shown only as a hash: it may hold secrets)."""
    if spec is None:
        return None
    launch = spec.launch
    return {
        "image": launch.image,
        "instance_type": launch.instance_type,
        "capacity": spec.capacity.as_dict(),
        "autoscaling": spec.autoscaling,
        "load_balancers": list(launch.load_balancers),
        "security_groups": list(launch.security_groups),
        "user_data_sha256": hashlib.sha256(launch.user_data.encode()).hexdigest()[:12]
        if launch.user_data
        else "",
        "tags": dict(launch.tags),
    }


def _stable_view(group: ServerGroup | None) -> dict[str, Any] | None:
    """What a change depends on of a live group: not health counts, which flap."""
    if group is None:
        return None
    view = group.view()
    view.pop("healthy")
    view.pop("instances")
    return view


def _fmt_seconds(seconds: float) -> str:
    s = int(seconds)
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    if s and s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"
