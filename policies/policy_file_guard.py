"""Policy file guard: while ``policies.yaml`` has errors, only rollbacks run.

Falling back to the built-in defaults silently would drop whatever the broken
file said (a freeze, a protected account, a window): guardrail settings are
never guessed. The plan names the file, line and field; fixing the file in Git
releases the held changes on the next pass.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.base import Judgement, Policy, PolicyContext, deny
from reconciler.core import model

NAME = "policy-file"
SHOWN = 3
"""Problems quoted in each message; the plan lists all of them anyway."""


def evaluate(plan: model.Plan, ctx: PolicyContext) -> Iterator[Judgement]:
    problems = ctx.policy_file.problems
    if not problems:
        return
    quoted = "; ".join(str(p) for p in problems[:SHOWN]) + ("; ..." if len(problems) > SHOWN else "")
    message = (f"the guardrail settings have {len(problems)} problem(s) ({quoted}); "
               "nothing but rollbacks runs until they are fixed")
    for change in plan.changes:
        if change.action is not model.Action.ROLLBACK:
            yield deny(NAME, change, message)


POLICY = Policy(NAME, evaluate, per_cluster=True)
