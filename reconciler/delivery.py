"""The delivery path, for people: the pipeline view of ``reconciler status APP`` and the path a change takes
in the Markdown plan of a pull request. Pure formatting of values the runtime computed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core import escaping, model
from reconciler.core.durations import format_seconds

_MARK = {"deployed": "✔", "deploying": "…", "waiting": "⏸", "failed": "✘", "bad": "✘"}


def status_lines(name: str, pipeline: Mapping[str, Any]) -> list[str]:
    """One block per environment: its version and state, what holds it and until when, the command to run."""
    v = escaping.visible
    out = [v(f"  pipeline of {name} (version {pipeline.get('version') or '-'}):")]
    for env in pipeline.get("environments") or []:
        since = env.get("healthy_since")
        when = f" since {_when(since)}" if since and env["state"] == "deployed" else ""
        out.append(v(f"    {_MARK.get(env['state'], '?')} {env['name']:<12} {env['version']:<16} {env['state']}{when}"))
        hold = env.get("hold")
        if hold:
            until = f" (until {_when(hold['until'])})" if hold.get("until") else ""
            out.append(v(f"        held by {hold['kind']}: {hold['message']}{until}"))
        for r in env.get("regions") or []:
            images = ", ".join(s["image"] for s in r["serving"]) or "nothing serving"
            mark = "at version" if r["at_version"] else "not yet"
            out.append(v(f"        {r['region']:<14} {r['cluster']:<28} {mark:<10} {images}"))
        if env.get("bad_versions"):
            out.append(v(f"        bad versions: {', '.join(env['bad_versions'])}"))
        if env.get("hint"):
            out.append(v(f"        next: {env['hint']}"))
    return out


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def path_markdown(desired: model.DesiredState, changes: Iterable[model.Change]) -> str:
    """For each application with environments that the plan changes: the environments in order and when the
    version enters each (Markdown, for the pull request comment)."""
    touched = {c.application for c in changes}
    blocks: list[str] = []
    for name in sorted(touched):
        app = desired.applications.get(name)
        if app is None or not app.environments:
            continue
        lines = [f"**Delivery path of `{escaping.visible(name)}`**:"]
        for i, env in enumerate(app.environments, 1):
            version = env.version or app.version
            lines.append(f"{i}. `{env.name}` runs `{escaping.visible(version)}` {_entry(app, env, version)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _entry(app: model.Application, env: model.Environment, version: str) -> str:
    rules: list[str] = []
    if env.depends_on:
        soak = f" for {format_seconds(env.soak_s)}" if env.soak_s else ""
        rules.append(f"after {' and '.join(f'`{d}`' for d in env.depends_on)} run it healthy{soak}")
    for w in env.allowed_times:
        days = ",".join(w.days) if w.days else "every day"
        rules.append(f"within {days} {w.start}-{w.end} {w.timezone}")
    if env.approval is not None:
        timeout = f" within {format_seconds(env.approval.timeout_s)}" if env.approval.timeout_s else ""
        rules.append(f"once approved{timeout} (`reconciler approve {app.name} --env {env.name} --version {version}`)")
    if env.max_concurrent:
        rules.append(f"in at most {env.max_concurrent} region(s) at a time")
    if env.schedules:
        rules.append("at the next of " + ", ".join(f"`{escaping.visible(s.describe())}`" for s in env.schedules))
    return ", ".join(rules) if rules else "at once"


def automation_line(look: Mapping[str, Any]) -> str:
    """Image automation's last look, one line: when, what it found, what it committed."""
    latest = f", newest admitted {look['latest']}" if look.get("latest") else ""
    of = f" of {look['environment']}" if look.get("environment") else ""
    return f"  automation{of} ({_when(float(look.get('checked_at') or 0))}): {look.get('state')}{latest}: " \
           f"{look.get('message')}"
