"""Image and instance-type allow-lists per account, so only vetted images and sizes reach an account.

``allowed_images`` and ``allowed_instance_types`` map an account (a name, or an
fnmatch pattern such as ``prod-*``; ``*`` for every account) to patterns. The
exact account name wins, then the first matching pattern in file order. An
account no key covers is not restricted. Only changes that create a group are
judged (create, replace): a resize or rollback brings nothing new.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence

from policies import patterns
from policies.base import Judgement, Policy, PolicyContext, deny
from reconciler.core import model

NAME = "allow-list"


def patterns_for(account: str, lists: Mapping[str, Sequence[str]]) -> Sequence[str] | None:
    """The patterns that apply in ``account``, or None when no key covers it."""
    if account in lists:
        return lists[account]
    return next((allowed for key, allowed in lists.items() if fnmatch.fnmatchcase(account, key)), None)


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        spec = change.desired
        if spec is None or change.action not in (model.Action.CREATE, model.Action.REPLACE):
            continue
        settings = ctx.for_change(change)
        for field, value, key in (("image", spec.launch.image, "allowed_images"),
                                  ("instance_type", spec.launch.instance_type, "allowed_instance_types")):
            allowed = patterns_for(change.account, settings.get(key) or {})
            if allowed is not None and not patterns.matches(value, allowed):
                yield deny(NAME, change, f"{field} {value!r} is not allowed in account {change.account} "
                                         f"({key}: {', '.join(allowed) or 'nothing'})")


POLICY = Policy(NAME, evaluate, per_cluster=True)
