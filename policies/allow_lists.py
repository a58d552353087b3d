"""Image and instance-type allow-lists per account (fnmatch patterns; ``*`` for every account)."""

from __future__ import annotations

from collections.abc import Iterator

from policies import patterns
from policies.base import Judgement, Policy, PolicyContext, deny
from reconciler import model

NAME = "allow-list"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    for change in plan.changes:
        spec = change.desired
        if spec is None or change.action in (model.Action.RESIZE, model.Action.ROLLBACK):
            continue
        settings = ctx.for_change(change)
        for field, value, key in (("image", spec.launch.image, "allowed_images"),
                                  ("instance_type", spec.launch.instance_type, "allowed_instance_types")):
            lists = settings.get(key) or {}
            allowed = lists.get(change.account, lists.get("*"))
            if allowed is not None and not patterns.matches(value, allowed):
                yield deny(NAME, change, f"{field} {value!r} is not allowed in account {change.account} "
                                         f"({key}: {', '.join(allowed) or 'nothing'})")


POLICY = Policy(NAME, evaluate)
