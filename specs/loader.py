"""Load a spec tree: render (Jinja2 sandbox) -> parse (safe YAML) -> validate (cerberus) -> model values.

Every problem of every file is collected and reported as
``file:line: field.path: message``; a file with any problem contributes no
application (and is listed in ``broken_files``) while the others load. Results
are cached per (path, blob id, values blob id): a pass over an unchanged commit
parses nothing, and a commit that changes one file re-parses one file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from reconciler import config as config_mod
from reconciler import errors, model
from specs import schema as schema_mod
from specs import yamlnodes

MAX_FILE_BYTES = 1024 * 1024
VALUES_FILE = "values.yaml"
RESERVED = {"values.yaml", "policies.yaml"}



@dataclass(frozen=True, slots=True)
class SpecFile:
    path: str
    blob_id: str
    read: Callable[[], bytes]


@dataclass
class SpecCache:
    """Per-file results keyed by (path, blob id, values blob id); ``parses`` counts real work."""

    parses: int = 0
    _entries: dict[tuple[str, str, str], tuple[model.Application | None, tuple[errors.SpecProblem, ...]]] = field(
        default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str, str]) -> tuple[model.Application | None, tuple[errors.SpecProblem, ...]] | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: tuple[str, str, str],
            value: tuple[model.Application | None, tuple[errors.SpecProblem, ...]]) -> None:
        with self._lock:
            self._entries[key] = value


def parse_duration(text: str | int | float, *, field: str) -> float:
    """``30s``, ``10m``, ``1h``, ``500ms`` or a number of seconds (the config's parser); ValueError names the field."""
    try:
        return config_mod.parse_duration(text, where=field)
    except errors.ConfigError as exc:
        raise ValueError(str(exc)) from exc


_env = jinja2.sandbox.SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, loader=None, keep_trailing_newline=True,
)


def load_specs(
    files: Sequence[SpecFile], *, spec_path: str = "apps", commit: str = "", cache: SpecCache | None = None
) -> model.DesiredState:
    cache = cache if cache is not None else SpecCache()
    root = spec_path.strip("/")
    prefix = f"{root}/" if root else ""
    values_name = f"{prefix}{VALUES_FILE}"
    values_file = next((f for f in files if f.path == values_name), None)
    problems: list[errors.SpecProblem] = []
    values: dict[str, Any] = {}
    values_id = ""
    if values_file is not None:
        values_id = values_file.blob_id
        values, vproblems = _load_values(values_file)
        problems += vproblems
    spec_files = [
        f for f in files
        if f.path.endswith((".yaml", ".yml")) and f.path[len(prefix):] not in RESERVED
    ]
    apps: dict[str, model.Application] = {}
    broken: set[str] = {p.file for p in problems}
    first_file: dict[str, str] = {}
    for f in sorted(spec_files, key=lambda f: f.path):
        key = (f.path, f.blob_id, values_id)
        hit = cache.get(key)
        if hit is None:
            cache.parses += 1
            hit = _load_one(f, values, values_ok=not problems)
            cache.put(key, hit)
        app, file_problems = hit
        if file_problems:
            problems += file_problems
            broken.add(f.path)
            continue
        assert app is not None
        if app.name in first_file:
            problems.append(errors.SpecProblem(
                f.path, app.source.line, "application",
                f"application {app.name!r} is already defined in {first_file[app.name]}"))
            problems.append(errors.SpecProblem(
                first_file[app.name], apps[app.name].source.line, "application",
                f"application {app.name!r} is also defined in {f.path}"))
            broken.update({f.path, first_file[app.name]})
            del apps[app.name]
            continue
        first_file[app.name] = f.path
        apps[app.name] = app
    for name in [n for n, a in apps.items() if a.source.file in broken]:
        del apps[name]
    return model.DesiredState(commit=commit, applications=apps, problems=tuple(problems),
                              broken_files=frozenset(broken))


def load_directory(root: Path, *, spec_path: str = "apps", cache: SpecCache | None = None) -> model.DesiredState:
    """For ``reconciler validate PATH``: PATH is a repo root containing SPEC_PATH, or the spec directory."""
    root = root.resolve()
    if not root.exists():
        raise errors.SpecError([errors.SpecProblem(str(root), 0, "", "no such file or directory")])
    spec_dir = root / spec_path if (root / spec_path).is_dir() else root
    base = root if spec_dir != root else root.parent
    rel_prefix = os.path.relpath(spec_dir, base)
    files: list[SpecFile] = []
    refusals: list[errors.SpecProblem] = []
    for p in sorted(spec_dir.rglob("*")):
        if not p.is_file() or p.suffix not in (".yaml", ".yml"):
            continue
        rel = os.path.relpath(p, base)
        if p.is_symlink() and not p.resolve().is_relative_to(spec_dir):
            refusals.append(errors.SpecProblem(rel, 0, "", "symbolic link leaves the spec tree; not followed"))
            continue
        data = p.read_bytes() if p.stat().st_size <= MAX_FILE_BYTES else b"\0" * (MAX_FILE_BYTES + 1)
        blob = hashlib.sha1(data).hexdigest()  # noqa: S324 - a content id, like git's, not security
        files.append(SpecFile(rel, blob, _constant(data)))
    state = load_specs(files, spec_path=rel_prefix if rel_prefix != "." else "", cache=cache)
    if refusals:
        return model.DesiredState(state.commit, state.applications, tuple(refusals) + state.problems,
                                  state.broken_files | {r.file for r in refusals})
    return state


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


# ---------------------------------------------------------------------------- one file


def _read(f: SpecFile) -> tuple[str | None, errors.SpecProblem | None]:
    data = f.read()
    if len(data) > MAX_FILE_BYTES:
        return None, errors.SpecProblem(f.path, 0, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, errors.SpecProblem(f.path, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")


def _load_values(f: SpecFile) -> tuple[dict[str, Any], list[errors.SpecProblem]]:
    text, problem = _read(f)
    if problem is not None or text is None:
        return {}, [problem] if problem else []
    try:
        value, _ = yamlnodes.load_yaml_with_lines(text, file=f.path)
    except errors.SpecError as exc:
        return {}, exc.problems
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [errors.SpecProblem(f.path, 1, "", "values.yaml must be a mapping of names to values")]
    return value, []


def _load_one(
    f: SpecFile, values: dict[str, Any], *, values_ok: bool
) -> tuple[model.Application | None, tuple[errors.SpecProblem, ...]]:
    text, problem = _read(f)
    if problem is not None or text is None:
        return None, (problem,) if problem else ()
    try:
        rendered = _env.from_string(text).render(values=values)
    except jinja2.TemplateSyntaxError as exc:
        return None, (errors.SpecProblem(f.path, exc.lineno or 1, "", f"template syntax error: {exc.message}"),)
    except jinja2.UndefinedError as exc:
        hint = "" if values_ok else " (values.yaml has errors)"
        return None, (errors.SpecProblem(f.path, _template_line(exc), "", f"template: {exc.message}{hint}"),)
    except jinja2.exceptions.SecurityError as exc:
        return None, (errors.SpecProblem(f.path, _template_line(exc), "", f"template refused by the sandbox: {exc}"),)
    except jinja2.TemplateError as exc:
        return None, (errors.SpecProblem(f.path, _template_line(exc), "", f"template error: {exc}"),)
    except (ArithmeticError, TypeError, ValueError) as exc:
        return None, (errors.SpecProblem(f.path, _template_line(exc), "", f"template error: {exc}"),)
    try:
        doc, lines = yamlnodes.load_yaml_with_lines(rendered, file=f.path)
    except errors.SpecError as exc:
        return None, tuple(exc.problems)
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else type(doc).__name__
        return None, (errors.SpecProblem(f.path, 1, "", f"a spec must be a mapping with an application, got {kind}"),)
    problems = schema_mod.validate(doc, lines, file=f.path)
    if problems:
        return None, tuple(problems)
    return _to_model(doc, lines, f.path), ()


def _template_line(exc: BaseException) -> int:
    tb = exc.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return getattr(exc, "lineno", None) or line


def _to_model(doc: dict[str, Any], lines: dict[str, int], file: str) -> model.Application:
    name = doc["application"]
    clusters = []
    for i, c in enumerate(doc["clusters"]):
        cap = c["capacity"]
        health = c.get("health") or {}
        strat = c.get("strategy") or {}
        rollout = c.get("rollout") or {}
        clusters.append(model.ClusterSpec(
            application=name,
            stack=str(c.get("stack") or ""),
            detail=str(c.get("detail") or ""),
            provider=c["provider"],
            account=str(c["account"]),
            regions=tuple(c["regions"]),
            launch=model.LaunchSpec(
                image=str(c["image"]),
                instance_type=str(c["instance_type"]),
                user_data=str(c.get("user_data") or ""),
                security_groups=tuple(c.get("security_groups") or ()),
                load_balancers=tuple(c.get("load_balancers") or ()),
                tags=tuple(sorted((str(k), str(v)) for k, v in (c.get("tags") or {}).items())),
            ),
            capacity=model.Capacity(int(cap["min"]), int(cap["desired"]), int(cap["max"])),
            autoscaling=bool(c.get("autoscaling", False)),
            health=model.HealthSpec(
                healthy_percent=int(health.get("healthy_percent", 100)),
                timeout_s=parse_duration(health.get("timeout", "10m"), field="health.timeout"),
            ),
            strategy=model.Strategy(
                keep_disabled=int(strat.get("keep_disabled", 1)),
                scale_down=bool(strat.get("scale_down", True)),
                delay_before_disable_s=parse_duration(strat.get("delay_before_disable", 0), field="delay"),
                delay_before_scale_down_s=parse_duration(strat.get("delay_before_scale_down", 0), field="delay"),
                rollback_on_failure=bool(strat.get("rollback_on_failure", True)),
            ),
            rollout=model.Rollout(
                waves=tuple(tuple(w) for w in rollout.get("waves") or ()),
                pause_s=parse_duration(rollout.get("pause", 0), field="rollout.pause"),
            ),
            source=model.SourceRef(file, yamlnodes.line_of(lines, f"clusters[{i}]")),
        ))
    return model.Application(
        name=name, owner=str(doc["owner"]), criticality=model.Criticality(doc.get("criticality", "normal")),
        clusters=tuple(clusters), source=model.SourceRef(file, yamlnodes.line_of(lines, "application")),
    )
