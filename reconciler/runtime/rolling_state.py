"""Rolling deployments' progress in the store: the capacity each old group had when the deployment began.

The planner reads live state to know which step a rolling deployment reached, but a shrunk old group no
longer shows the capacity it must return to on failure, nor the share that leaves at each later step.
The executor records it before the first step and forgets it when the deployment ends either way.
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
    those of a deployment a crash left past its rolling steps (its resumed change no longer lists them)."""
    for key in store.get_prefix(rolling.origin_key(change.key, "", "")[:-1]):
        store.delete(key)
