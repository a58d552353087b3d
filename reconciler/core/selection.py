"""Which judged changes run now, and why each other one does not: a pure function of the judged plan.

The holds are typed (``model.Hold``) so status, the console and notifications sort them by kind;
the prose is for people.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.core import model, planner


def select(
    plan: model.Plan,
    approved: Callable[[model.Change], bool],
    *,
    running: set[str],
    backing_off: dict[tuple[str, str], str],
    skipped: tuple[planner.Skip, ...],
    same_run: bool,
) -> tuple[list[model.Change], list[tuple[model.Change, model.Held]]]:
    """Which judged changes run now, and why each other one does not.

    A change that waits for other clusters (``Change.waiting``: an earlier wave that does not serve
    its spec yet, or the clusters replacing a destroyed one) runs only when each of them has a change
    running in the same execution, which orders it first: the waves of one cluster always (the
    executor runs them in order and stops at a failed one); a destroy after its replacements only
    when ``same_run`` (a foreground run; the daemon leaves it for a later pass). Otherwise it is
    held with the reason the earlier one is held or skipped.
    """
    runnable: list[model.Change] = []
    held: list[tuple[model.Change, model.Held]] = []
    denials: dict[str, model.Held] = {}  # one hold per message: a freeze denies 20,000 changes with one
    for change in plan.changes:
        verdict = change.verdict
        if verdict is model.Verdict.DENY:
            why = "denied: " + "; ".join(v.message for v in change.verdicts if v.verdict is model.Verdict.DENY)
            held.append((change, denials.get(why) or denials.setdefault(why, model.Held(model.Hold.DENIED, why))))
        elif verdict is model.Verdict.APPROVE and not approved(change):
            held.append((change, model.Held(
                model.Hold.APPROVAL, f"waiting for approval (reconciler approve {change.change_id})")))
        elif change.key in running:
            held.append((change, model.Held(model.Hold.RUNNING, "an execution is in progress")))
        elif (change.key, change.spec_hash) in backing_off:
            held.append((change, model.Held(model.Hold.BACKOFF, backing_off[(change.key, change.spec_hash)])))
        else:
            runnable.append(change)
    if any(v.verdict is model.Verdict.DENY for v in plan.plan_verdicts):
        held += [(c, model.Held(model.Hold.PLAN_DENIED, "denied by a plan-wide policy")) for c in runnable]
        runnable = []
    why_not: dict[str, str] = {s.key: s.reason for s in skipped}
    why_not.update({c.key: str(h) for c, h in held})
    keys = {c.key for c in runnable}
    moved = True
    while moved:  # a hold can hold others (a replacement waiting for its own earlier wave)
        moved = False
        keep: list[model.Change] = []
        for c in runnable:
            in_run = same_run or c.action is not model.Action.DESTROY
            blocked = [k for k in c.waiting if not (in_run and k in keys)]
            if blocked:
                hold = _wait_hold(c, blocked, why_not, keys)
                held.append((c, hold))
                why_not[c.key] = str(hold)
                keys.discard(c.key)
                moved = True
            else:
                keep.append(c)
        runnable = keep
    return runnable, held


def complete(changes: list[model.Change], *, same_run: bool) -> list[model.Change]:
    """``changes`` without those whose waits (``Change.waiting``) are no longer in the set: what
    ``select`` guarantees, kept after a later step removes changes (several replicas: a claim that
    another replica holds, or one taken over this pass). Without it a later wave could run while its
    earlier wave, not serving the spec yet, was dropped from the run."""
    out = list(changes)
    while True:
        keys = {c.key for c in out}
        keep = [c for c in out if all((same_run or c.action is not model.Action.DESTROY) and k in keys
                                      for k in c.waiting)]
        if len(keep) == len(out):
            return keep
        out = keep


def _wait_hold(change: model.Change, blocked: list[str], why_not: dict[str, str], keys: set[str]) -> model.Held:
    def why(k: str) -> str:
        if k in why_not:
            return why_not[k]
        return "deploying in this pass; destroyed on a later one" if k in keys else "not serving yet"

    if change.action is model.Action.DESTROY:
        parts = [f"{model.split_key(k)[3]} in {model.split_key(k)[2]} ({why(k)})" for k in blocked]
        return model.Held(model.Hold.REPLACEMENT, f"waiting for {'; '.join(parts)} to serve before destroying "
                          f"{change.cluster}: {change.application} would have no serving capacity there")
    spec = change.desired
    wave_of = {r: i for i, w in enumerate(spec.waves) for r in w} if spec else {}
    regions = [model.split_key(k)[2] for k in blocked]
    waves = sorted({wave_of.get(r, 0) + 1 for r in regions})
    parts = [f"{r}: {why(k)}" for r, k in zip(regions, blocked, strict=True)]
    return model.Held(model.Hold.WAVE, f"waiting for wave {', '.join(map(str, waves))} to succeed with spec "
                      f"{change.spec_hash[:8]} ({'; '.join(parts)})")
