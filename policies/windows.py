"""Deployment windows: allowed and denied times by weekday, in a time zone, DST-correct.

Outside every allowed window (or inside a denied one) a change is denied with
the time the next window opens; the engine re-plans every pass, so the change
proceeds by itself then. Rollbacks are always allowed. A window whose ``to`` is
before its ``from`` runs overnight (22:00-06:00 belongs to its starting day).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler import model

NAME = "deployment-window"
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _bounds(w: dict[str, Any], day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start_t = time.fromisoformat(w["from"])
    end_s = w["to"]
    end_day = day
    end_t = time(0, 0) if end_s == "24:00" else time.fromisoformat(end_s)
    if end_s == "24:00" or end_t <= start_t:
        end_day = day + timedelta(days=1)
    start = datetime.combine(day, start_t, tzinfo=zone)
    end = datetime.combine(end_day, end_t, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _occurrences(w: dict[str, Any], zone: ZoneInfo, now: datetime, days: int) -> Iterator[tuple[datetime, datetime]]:
    local_today = now.astimezone(zone).date()
    allowed_days = set(w.get("days") or DAYS)
    for offset in range(-1, days):
        day = local_today + timedelta(days=offset)
        if DAYS[day.weekday()] in allowed_days:
            yield _bounds(w, day, zone)


def _zone(w: dict[str, Any], default: str) -> ZoneInfo:
    return ZoneInfo(w.get("timezone") or default)


def check(windows: dict[str, Any], now_ts: float) -> tuple[bool, str]:
    """(allowed now, message). Pure: the time comes from the caller."""
    now = datetime.fromtimestamp(now_ts, UTC)
    default_tz = windows.get("timezone") or "UTC"
    allows = windows.get("allow") or []
    denies = windows.get("deny") or []
    for w in denies:
        zone = _zone(w, default_tz)
        for start, end in _occurrences(w, zone, now, 1):
            if start <= now < end:
                return False, (f"inside a denied window until {end.astimezone(zone).isoformat(timespec='minutes')} "
                               f"({zone.key})")
    if not allows:
        return True, "no deployment windows configured"
    for w in allows:
        zone = _zone(w, default_tz)
        for start, end in _occurrences(w, zone, now, 1):
            if start <= now < end:
                return True, f"inside an allowed window until {end.astimezone(zone).isoformat(timespec='minutes')}"
    opening = _next_opening(allows, denies, default_tz, now)
    if opening is None:
        return False, "outside every allowed deployment window (none opens within 14 days)"
    when, zone = opening
    local = when.astimezone(zone).isoformat(timespec="minutes")
    return False, f"outside the allowed deployment windows; next opening {local} ({zone.key})"


def _next_opening(allows: list[dict[str, Any]], denies: list[dict[str, Any]], default_tz: str,
                  now: datetime) -> tuple[datetime, ZoneInfo] | None:
    candidates: list[tuple[datetime, ZoneInfo]] = []
    for w in allows:
        zone = _zone(w, default_tz)
        candidates += [(start, zone) for start, _end in _occurrences(w, zone, now, 15) if start > now]
    for start, zone in sorted(candidates, key=lambda c: c[0]):
        blocked = any(s <= start < e for d in denies for s, e in _occurrences(d, _zone(d, default_tz), start, 1))
        if not blocked:
            return start, zone
    return None


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        windows = ctx.for_change(change).get("windows") or {}
        if not (windows.get("allow") or windows.get("deny")):
            continue
        if change.action is model.Action.ROLLBACK:
            yield allow(NAME, change, "rollbacks are allowed at any time")
            continue
        ok, message = check(windows, ctx.now)
        yield allow(NAME, change, message) if ok else deny(NAME, change, message)


POLICY = Policy(NAME, evaluate)
