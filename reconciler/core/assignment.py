"""Which replica owns which cluster: rendezvous hashing with bounded loads (pure).

Every replica computes the same answer from the same two inputs (the live
members, the rollout units of the commit in force), so no coordination is
needed to agree on the split; the claims table in the store is what makes a
disagreement (two commits seen for a moment) safe. A unit is one cluster of one
provider account across its regions, so the waves of a rollout stay in one
replica. Bounded loads (no member above ``ceil(units / members)``) keep the
split even; rendezvous order keeps it stable: a member that joins or leaves
moves about ``1 / members`` of the units.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from reconciler.core import model


def unit_of(key: str) -> str:
    """The rollout unit of a cluster key ``provider/account/region/cluster``: the key without its region."""
    provider, account, _region, cluster = model.split_key(key)
    return f"{provider}/{account}/{cluster}"


def _score(unit: str, member: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{unit}\0{member}".encode(), digest_size=8).digest(), "big")


def preferred(unit: str, members: Sequence[str]) -> str:
    """The member with the highest rendezvous score for ``unit`` (no load bound)."""
    return max(members, key=lambda m: (_score(unit, m), m))


def assign(units: Iterable[str], members: Iterable[str]) -> dict[str, str]:
    """``{unit: member}`` for every unit; each member gets at most ``ceil(units / members)``."""
    ms = sorted(set(members))
    us = sorted(set(units), key=lambda u: (hashlib.blake2b(u.encode(), digest_size=8).digest(), u))
    if not ms:
        return {}
    cap = math.ceil(len(us) / len(ms)) if us else 0
    load = dict.fromkeys(ms, 0)
    out: dict[str, str] = {}
    for unit in us:
        for member in sorted(ms, key=lambda m: (-_score(unit, m), m)):
            if load[member] < cap:
                out[unit] = member
                load[member] += 1
                break
    return out


def owner(key: str, table: dict[str, str], members: Sequence[str]) -> str | None:
    """Who owns the cluster ``key``: by the table for the commit's units, by rendezvous for any other
    (a cluster only in live state, being destroyed), which every replica computes alike."""
    if not members:
        return None
    unit = unit_of(key)
    return table.get(unit) or preferred(unit, members)
