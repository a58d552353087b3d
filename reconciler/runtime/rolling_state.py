"""Rolling deployments' progress in the store: the capacity each old group had when the deployment began.

The planner reads live state to know which step a rolling deployment reached, but a shrunk old group no
longer shows the capacity it must return to on failure, nor the share that leaves at each later step.
The executor records it before the first step and forgets it when the deployment ends either way; a
change that stops at a step with ``pause_for_approval`` does not end the deployment: its origins stay, and
the step it reached is recorded (``rolling.Judgment``) until the judgment step runs once approved.
"""

from __future__ import annotations

from reconciler.core import model
from reconciler.core.strategies import rolling
from reconciler.state import store as store_mod


def origins(store: store_mod.Store) -> dict[str, model.Capacity]:
    """Every recorded origin, keyed as ``rolling.origin_key``, for the planner's options."""
    return rolling.parse_origins(store.get_prefix(rolling.ORIGINS_PREFIX))


def remember(store: store_mod.Store, change: model.Change, now: float) -> None:
    """Record the old groups' original capacities once (a resumed execution keeps the first record)."""
    target = change.desired_server_group or ""
    for name, cap in change.restore:
        key = rolling.origin_key(change.key, target, name)
        if store.get(key) is None:
            store.put(key, cap.as_dict(), now)


def forget(store: store_mod.Store, change: model.Change) -> None:
    """The cluster's deployment ended (succeeded or rolled back): drop every origin recorded for it, also
    those of a deployment a crash left past its rolling steps (its resumed change no longer lists them),
    and its manual judgments."""
    for key in store.get_prefix(rolling.origin_key(change.key, "", "")[:-1]):
        store.delete(key)
    store.delete(rolling.judgment_key(change.key))


def judgments(store: store_mod.Store) -> dict[str, rolling.Judgment]:
    """Every rolling deployment's manual judgments, keyed as ``rolling.judgment_key``, for the planner."""
    return rolling.parse_judgments(store.get_prefix(rolling.JUDGMENT_PREFIX))


def _judgment(store: store_mod.Store, change: model.Change) -> rolling.Judgment:
    key = rolling.judgment_key(change.key)
    rec = rolling.parse_judgments({key: store.get(key)}).get(key)
    target = change.desired_server_group or ""
    return rec if rec is not None and rec.server_group == target else rolling.Judgment(target)


def ended(store: store_mod.Store, change: model.Change, now: float) -> None:
    """A change succeeded: the deployment ended, or it stopped at a step that waits for a manual judgment
    (then the step reached is recorded and the origins stay for the rest of it)."""
    at = rolling.stops_at(change)
    if at is None:
        forget(store, change)
        return
    rec = _judgment(store, change)
    store.put(rolling.judgment_key(change.key), {**rec.as_dict(), "reached": at}, now)


def approved(store: store_mod.Store, change: model.Change, percent: int, now: float) -> None:
    """The judgment step of ``percent`` ran (its change was approved): that step never asks again."""
    rec = _judgment(store, change)
    store.put(rolling.judgment_key(change.key),
              {**rec.as_dict(), "reached": 0, "approved": sorted({*rec.approved, percent})}, now)
