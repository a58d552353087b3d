"""Signed commits: when required, nothing is applied from a commit whose signature was not verified
(by the git source, with gpg or ``ssh-keygen -Y verify`` against an allow-list)."""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, allow, deny
from reconciler.core import model

NAME = "signed-commits"


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    if not ctx.global_settings()["signed_commits"]["required"]:
        return
    sig = ctx.commit_signature
    for change in plan.changes:
        if sig is not None and sig.verified:
            yield allow(NAME, change, f"commit {plan.commit[:8]} is signed by {sig.key}")
        else:
            yield deny(NAME, change, f"commit {plan.commit[:8]} is not signed by an allowed key: "
                                     f"{sig.reason if sig is not None else 'not verified'}")


POLICY = Policy(NAME, evaluate)
