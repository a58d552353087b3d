"""Deployment windows: allowed and denied times by weekday, in an IANA time zone, DST-correct.

Outside every allowed window (or inside a denied one) a change is denied with
the time the next window opens; the engine re-plans every pass, so the change
proceeds by itself then. Rollbacks are always allowed: the way back must stay
open. Window times are wall-clock times in their zone, computed per calendar
day, so 09:00 stays 09:00 across a DST change (and a start inside a spring-
forward gap begins when the clock jumps past it). A window whose ``to`` is not
after its ``from`` runs overnight and belongs to the day it starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler.core import model

NAME = "deployment-window"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 15
"""How far ahead the next opening is searched: two weeks and a day covers any weekly pattern."""


@dataclass(frozen=True, slots=True)
class _Interval:
    start: datetime  # UTC
    end: datetime  # UTC
    zone: ZoneInfo

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end


def _local(t: datetime, zone: ZoneInfo) -> str:
    return f"{t.astimezone(zone).isoformat(timespec='minutes')} ({zone.key})"


def _intervals(windows: Sequence[dict[str, Any]], default_tz: str, now: datetime) -> list[_Interval]:
    """Every occurrence from the day before ``now`` (overnight windows) to the horizon."""
    out: list[_Interval] = []
    for w in windows:
        zone = ZoneInfo(w.get("timezone") or default_tz)
        start_t = time.fromisoformat(w["from"])
        end_t = time(0, 0) if w["to"] == "24:00" else time.fromisoformat(w["to"])
        overnight = w["to"] == "24:00" or end_t <= start_t
        days = set(w.get("days") or DAYS)
        today = now.astimezone(zone).date()
        for offset in range(-1, HORIZON_DAYS):
            day = today + timedelta(days=offset)
            if DAYS[day.weekday()] not in days:
                continue
            start = datetime.combine(day, start_t, tzinfo=zone)
            end = datetime.combine(day + timedelta(days=1) if overnight else day, end_t, tzinfo=zone)
            out.append(_Interval(start.astimezone(UTC), end.astimezone(UTC), zone))
    return out


def check(windows: dict[str, Any], now_ts: float) -> tuple[bool, str]:
    """(allowed now, message for the plan). Pure: the time comes from the caller."""
    ok, message, _ = opening(windows, now_ts)
    return ok, message


def opening(windows: dict[str, Any], now_ts: float) -> tuple[bool, str, float | None]:
    """As ``check``, plus when a closed window next opens (epoch seconds; None when open or not within reach)."""
    now = datetime.fromtimestamp(now_ts, UTC)
    default_tz = windows.get("timezone") or "UTC"
    allows = _intervals(windows.get("allow") or [], default_tz, now)
    denies = _intervals(windows.get("deny") or [], default_tz, now)
    configured = bool(windows.get("allow"))

    def open_at(t: datetime) -> bool:
        return not any(d.contains(t) for d in denies) and (not configured or any(a.contains(t) for a in allows))

    if open_at(now):
        ends = [a.end for a in allows if a.contains(now)] + [d.start for d in denies if d.start > now]
        if not ends:
            return True, "outside every denied deployment window", None
        closes = min(ends)
        zone = next((a.zone for a in allows if a.contains(now)), denies[0].zone if denies else ZoneInfo("UTC"))
        return True, f"inside the deployment windows until {_local(closes, zone)}", None
    blocking = next((d for d in denies if d.contains(now)), None)
    why = (f"inside a denied deployment window until {_local(blocking.end, blocking.zone)}" if blocking
           else "outside the allowed deployment windows")
    candidates = sorted(((i.start, i.zone) for i in allows if i.start > now), key=lambda c: c[0])
    candidates += [(d.end, d.zone) for d in denies if d.end > now]
    opening = min((c for c in candidates if open_at(c[0])), key=lambda c: c[0], default=None)
    if opening is None:
        return False, f"{why}; no window opens within {HORIZON_DAYS - 1} days", None
    when, zone = opening
    if configured:  # name the zone of the allowed window that is open then
        zone = next((a.zone for a in allows if a.contains(when)), zone)
    return False, f"{why}; next opening {_local(when, zone)}", when.timestamp()


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    seen: dict[int, tuple[dict[str, Any], tuple[bool, str]]] = {}  # one computation per distinct settings object
    for change in plan.changes:
        windows = ctx.for_change(change).get("windows") or {}
        if not (windows.get("allow") or windows.get("deny")):
            continue
        if change.action is model.Action.ROLLBACK:
            yield allow(NAME, change, "rollbacks are allowed at any time")
            continue
        key = id(windows)
        if key not in seen:
            seen[key] = (windows, check(windows, ctx.now))
        ok, message = seen[key][1]
        yield allow(NAME, change, message) if ok else deny(NAME, change, message)


def clock_view(settings: Any, desired: model.DesiredState, live: Sequence[model.ServerGroup], now_ts: float
               ) -> tuple[tuple[bool, str], ...]:
    """What the clock decides for this rule now: ``check`` of every distinct window setting in force.

    The only verdicts that move with time alone (approval expiry is in the approvals the engine reads),
    so a pass whose other inputs are unchanged may reuse its last judgement while this is the same.
    Empty, and free, when no layer of ``policies.yaml`` sets windows.
    """
    layers = [getattr(settings, "defaults", None) or {}]
    for name in ("criticality", "applications", "clusters"):
        layers += list((getattr(settings, name, None) or {}).values())
    if not any(layer.get("windows") for layer in layers) or not hasattr(settings, "for_cluster"):
        return ()
    targets = {(a.name, c.name, a.criticality.value) for a in desired.applications.values() for c in a.clusters}
    targets |= {(g.application, g.cluster, "normal") for g in live if g.application not in desired.applications}
    seen: dict[int, tuple[bool, str]] = {}
    for target in sorted(targets):  # as ``PolicyContext.for_change`` resolves them, destroys included
        windows = settings.for_cluster(*target).get("windows") or {}
        if (windows.get("allow") or windows.get("deny")) and id(windows) not in seen:
            seen[id(windows)] = check(windows, now_ts)
    return tuple(seen.values())


POLICY = Policy(NAME, evaluate, per_cluster=True)
