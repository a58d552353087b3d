"""The spec side of environments and versions: rules across fields, and turning them into model values.

The schema block lives in ``specs/schema.py`` (its own section); this module holds what cerberus
cannot say: ``depends_on`` names an earlier environment, ``{version}`` in an image needs a version,
``version_from`` names a key of ``values.yaml`` holding a string, time zones exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from reconciler.core import errors, model, schedules
from specs import automation as automation_spec
from specs import images as image_spec

VERSION_RE = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
VALUES_KEY_RE = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$"
ENV_NAME_RE = r"^[a-z][a-z0-9-]*$"
FROM_RE = r"^([01]\d|2[0-3]):[0-5]\d$"
TO_RE = r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PLACEHOLDER = "{version}"

Bad = Callable[[str, str], None]


def all_clusters(doc: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field path, cluster) of every cluster: the application's own, then each environment's."""
    raw = doc.get("clusters")
    for i, c in enumerate(raw if isinstance(raw, list) else []):
        yield f"clusters[{i}]", c
    envs = doc.get("environments")
    for e, env in enumerate(envs if isinstance(envs, list) else []):
        inner = env.get("clusters") if isinstance(env, dict) else None
        for i, c in enumerate(inner if isinstance(inner, list) else []):
            yield f"environments[{e}].clusters[{i}]", c


def lookup(values: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check(doc: Mapping[str, Any], bad: Bad) -> None:
    """Every cross-field problem of versions and environments, through ``bad(field path, message)``."""
    if not doc.get("clusters") and not doc.get("environments"):
        bad("clusters", "required field (or environments, each with its clusters)")
    for at, holder in [("", doc), *((f"environments[{e}].", env) for e, env in enumerate(_envs(doc)))]:
        if holder.get("version") is not None and holder.get("version_from") is not None:
            bad(f"{at}version_from", "give version or version_from, not both")
    names: dict[str, int] = {}
    for e, env in enumerate(_envs(doc)):
        name = env.get("name")
        if not isinstance(name, str):
            continue
        if name in names:
            bad(f"environments[{e}].name", f"environment {name!r} is defined twice (also environments[{names[name]}])")
            continue
        deps = env.get("depends_on")
        for d, dep in enumerate(deps if isinstance(deps, list) else []):
            if dep == name:
                bad(f"environments[{e}].depends_on[{d}]", f"{name!r} cannot depend on itself")
            elif dep not in names:
                later = [str(x.get("name")) for x in _envs(doc)[e + 1:]]
                why = "a later environment: list environments in delivery order" if dep in later else (
                    f"no environment named {dep!r}; earlier ones: {', '.join(names) or 'none'}")
                bad(f"environments[{e}].depends_on[{d}]", why)
        for t, entry in enumerate(env.get("schedules") or []):
            cron, tz = (entry, None) if isinstance(entry, str) else (
                (entry.get("cron"), entry.get("timezone")) if isinstance(entry, dict) else (None, None))
            at = f"environments[{e}].schedules[{t}]"
            if isinstance(cron, str) and not schedules.valid(cron):
                bad(at if isinstance(entry, str) else f"{at}.cron", f"{cron!r} is not a cron expression: five "
                    "fields, minute hour day-of-month month day-of-week, e.g. '0 9 * * mon-thu'")
            if isinstance(tz, str) and not _zone_ok(tz):
                bad(f"{at}.timezone", f"unknown time zone {tz!r}")
        for t, window in enumerate(env.get("allowed_times") or []):
            tz = window.get("timezone") if isinstance(window, dict) else None
            if isinstance(tz, str) and not _zone_ok(tz):
                bad(f"environments[{e}].allowed_times[{t}].timezone", f"unknown time zone {tz!r}")
        names[name] = e
    app_version = doc.get("version") is not None or doc.get("version_from") is not None
    for e, env in enumerate(_envs(doc)):
        if not (app_version or env.get("version") is not None or env.get("version_from") is not None):
            bad(f"environments[{e}]", "an environment needs a version to promote: set version or version_from "
                "on the application (or on this environment)")
    for at, c in all_clusters(doc):
        image = c.get("image") if isinstance(c, dict) else None
        if not any(PLACEHOLDER in text for text in image_spec.placeholders(image)):
            continue
        env_at = at.split(".clusters[")[0] if at.startswith("environments[") else ""
        env = _envs(doc)[int(env_at[13:-1])] if env_at else {}
        if not (app_version or env.get("version") is not None or env.get("version_from") is not None):
            bad(f"{at}.image", f"{PLACEHOLDER} needs a version: set version or version_from on the application")


def check_values(doc: Mapping[str, Any], values: Mapping[str, Any], bad: Bad) -> None:
    """``version_from`` keys against the ``values.yaml`` the file was rendered with."""
    for at, holder in [("", doc), *((f"environments[{e}].", env) for e, env in enumerate(_envs(doc)))]:
        key = holder.get("version_from")
        if isinstance(key, str):
            _check_values_key(key, values, f"{at}version_from", bad)


def _check_values_key(key: str, values: Mapping[str, Any], at: str, bad: Bad) -> None:
    found, value = lookup(values, key)
    if not found:
        bad(at, f"values.yaml has no key {key}")
    elif not isinstance(value, str):
        bad(at, f"values.yaml {key} must be a string (quote it: 1.10 would read as the number 1.1), "
                f"got {type(value).__name__}")
    elif not re.fullmatch(VERSION_RE, value) or len(value) > 128:
        bad(at, f"values.yaml {key} is {value!r}, not a version (letters, digits, '.', '_', '+', '-')")


def _envs(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = doc.get("environments")
    return [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []


def _zone_ok(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - only when a zone is named

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def version(holder: Mapping[str, Any], values: Mapping[str, Any], *, file: str, values_file: str, at: str,
            line: Callable[[str], int]) -> tuple[str, model.VersionSource | None]:
    """The version of the application or an environment, and where ``promote`` writes it."""
    if holder.get("version") is not None:
        return str(holder["version"]), model.VersionSource(file, f"{at}version", line(f"{at}version"))
    key = holder.get("version_from")
    if isinstance(key, str):
        return str(lookup(values, key)[1]), model.VersionSource(values_file, key)
    return "", None


def environments(doc: Mapping[str, Any], values: Mapping[str, Any], *, file: str, values_file: str,
                 line: Callable[[str], int], seconds: Callable[[Any], float]) -> tuple[model.Environment, ...]:
    out: list[model.Environment] = []
    envs = _envs(doc)
    for e, env in enumerate(envs):
        deps = env.get("depends_on")
        depends = tuple(deps) if isinstance(deps, list) else ((str(envs[e - 1]["name"]),) if e else ())
        approval = env.get("approval")
        approval = ({} if approval is True else approval) if approval is not False else None
        ver, source = version(env, values, file=file, values_file=values_file, at=f"environments[{e}].", line=line)
        out.append(model.Environment(
            name=str(env["name"]), depends_on=depends, soak_s=seconds(env.get("soak", 0)),
            allowed_times=tuple(model.TimeWindow(start=w["from"], end=w["to"], days=tuple(w.get("days") or ()),
                                                 timezone=str(w.get("timezone") or "UTC"))
                                for w in env.get("allowed_times") or ()),
            approval=model.ApprovalRule(seconds((approval or {}).get("timeout", 0))) if approval is not None
            else None,
            version=ver, version_source=source,
            automation=automation_spec.to_model(env.get("automation"), line(f"environments[{e}].automation")),
            max_concurrent=int(env.get("max_concurrent") or 0),
            schedules=tuple(model.Schedule(w) if isinstance(w, str) else
                            model.Schedule(str(w["cron"]), str(w.get("timezone") or "UTC"))
                            for w in env.get("schedules") or ()),
        ))
    return tuple(out)


def with_version(image: str, version_text: str) -> str:
    return image.replace(PLACEHOLDER, version_text) if version_text else image


def check_dependencies(apps: Mapping[str, model.Application]) -> list[errors.SpecProblem]:
    """``depends_on`` between applications: each names an application and environment that exist, and no
    application depends on itself through others (a cycle would hold them all forever)."""
    out: list[errors.SpecProblem] = []
    for app in apps.values():
        for i, dep in enumerate(app.depends_on):
            at = f"depends_on[{i}]"
            other = apps.get(dep.application)
            if other is None:
                out.append(errors.SpecProblem(app.source.file, dep.line, f"{at}.application",
                                              f"no application named {dep.application!r} (or its file is broken)"))
            elif not any(e.name == dep.environment for e in other.environments):
                names = ", ".join(e.name for e in other.environments) or "none"
                out.append(errors.SpecProblem(app.source.file, dep.line, f"{at}.environment",
                                              f"{dep.application} has no environment named {dep.environment!r} "
                                              f"(its environments: {names})"))
            elif app.environments and not any(e.name == dep.environment for e in app.environments):
                names = ", ".join(e.name for e in app.environments)
                out.append(errors.SpecProblem(app.source.file, dep.line, f"{at}.environment",
                                              f"{app.name} has no environment named {dep.environment!r} to hold "
                                              f"(its environments: {names})"))
    graph = {a.name: [d.application for d in a.depends_on if d.application in apps] for a in apps.values()}
    for cycle in _cycles(graph):
        for name in cycle:
            app = apps[name]
            i, dep = next((i, d) for i, d in enumerate(app.depends_on) if d.application in cycle)
            out.append(errors.SpecProblem(app.source.file, dep.line, f"depends_on[{i}].application",
                                          f"dependency cycle between applications {', '.join(cycle)}: each "
                                          "would wait for the other forever"))
    return out


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Each cycle once (the strongly connected parts with more than one node, or a self-loop), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part: list[str] = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    part.append(top)
                    if top == node:
                        break
                if len(part) > 1 or node in graph[node]:
                    out.append(sorted(part))
    return out
