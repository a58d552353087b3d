"""Load a spec tree: render (Jinja2 sandbox) -> parse (safe YAML) -> validate (cerberus) -> model values.

Every problem of every file is collected and reported as
``file:line: field.path: message``; a file with any problem contributes no
application (and is listed in ``broken_files``) while the others load. Results
are cached per (path, blob id, values blob id): a pass over an unchanged commit
parses nothing, and a commit that changes one file re-parses one file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.runtime
import jinja2.sandbox

from reconciler import config as config_mod
from reconciler import errors, model
from specs import catalog as catalog_mod
from specs import policy_file, yamlnodes
from specs import schema as schema_mod

__all__ = ["MAX_FILE_BYTES", "MAX_RENDERED_CHARS", "SpecCache", "SpecFile", "load_directory", "load_specs",
           "parse_duration"]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024
"""Larger spec files are refused unread: a spec is a page of YAML, not a data dump."""
MAX_RENDERED_CHARS = 4 * 1024 * 1024
"""Rendering stops past this size, so a runaway loop cannot exhaust memory."""
VALUES_FILE = "values.yaml"
RESERVED = {"values.yaml", "policies.yaml"}
"""Files at the spec root that are not application specs."""

_Result = tuple[model.Application | None, tuple[errors.SpecProblem, ...]]


@dataclass(frozen=True, slots=True)
class SpecFile:
    """One file under the spec path, read lazily so a cache hit costs no blob read."""

    path: str
    """Repo-relative, e.g. ``apps/checkout.yaml``; error messages show it."""
    blob_id: str
    """Git blob id, or a sha1 of the content for directories."""
    read: Callable[[], bytes]
    """Called only on a cache miss."""


@dataclass
class SpecCache:
    """Per-file results keyed by (path, blob id, values blob id); ``parses`` counts real work.

    The path is part of the key because problems name their file: the same
    content at two paths gives two differently worded results. The values
    blob id is part of it because every template may read ``values``.
    """

    parses: int = 0
    max_entries: int = 50_000
    """Least recently used entries go first: a daemon's cache must not grow with every commit forever."""
    _entries: OrderedDict[tuple[str, str, str], _Result] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _unread: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def get(self, key: tuple[str, str, str]) -> _Result | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: tuple[str, str, str], value: _Result) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def unread_apps(self, f: SpecFile) -> tuple[str, ...]:
        """Applications a file that is not a spec may define (read once per blob)."""
        key = (f.path, f.blob_id)
        with self._lock:
            hit = self._unread.get(key)
        if hit is None:
            hit = catalog_mod.may_define(f.path, f.read())
            with self._lock:
                if len(self._unread) >= self.max_entries:
                    self._unread.clear()
                self._unread[key] = hit
        return hit


def parse_duration(text: str | int | float, *, field: str) -> float:
    """``30s``, ``10m``, ``1h``, ``500ms`` or a number of seconds (the config's parser); ValueError names the field."""
    try:
        return config_mod.parse_duration(text, where=field)
    except errors.ConfigError as exc:
        raise ValueError(str(exc)) from exc


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """The Jinja2 sandbox, plus a size check on ``*`` and ``**`` (``{{ 'x' * 10**10 }}`` would eat memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) \
                        and len(seq) * times > MAX_RENDERED_CHARS:
                    raise jinja2.exceptions.SecurityError(f"'*' would build {len(seq) * times:,} items")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right > 0 and (abs(left).bit_length() - 1) * right > 4096:
            raise jinja2.exceptions.SecurityError(f"'**' result too large ({left} ** {right})")
        return super().call_binop(context, operator, left, right)


_env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, loader=None, keep_trailing_newline=True)


def load_specs(
    files: Sequence[SpecFile], *, spec_path: str = "apps", commit: str = "", cache: SpecCache | None = None,
    catalog: catalog_mod.Catalog | None = None,
) -> model.DesiredState:
    """The desired state of one tree: every spec file under ``spec_path`` rendered, parsed and validated.

    ``files`` is every file under ``spec_path``: ``.yaml``/``.yml`` in any
    letter case are specs, the reserved ``values.yaml``/``policies.yaml`` at its
    root are skipped, and every other file is reported in ``notices`` and
    ``unread_files`` (pruning is held for the applications it may define).
    With a ``catalog``, a cluster naming an unknown provider, an unconfigured
    account or a region its account does not allow is its file's problem.
    Never raises for bad input: problems come back in ``DesiredState.problems``
    (sorted by file, then line) and their files in ``broken_files``.
    """
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
        if catalog_mod.is_spec_file(f.path) and f.path[len(prefix):] not in RESERVED
    ]
    unread: dict[str, tuple[str, ...]] = {}
    for f in files:
        if not catalog_mod.is_spec_file(f.path):
            unread[f.path] = cache.unread_apps(f)
    notices = tuple(catalog_mod.unread_notice(path, apps) for path, apps in sorted(unread.items()))
    apps: dict[str, model.Application] = {}
    broken: set[str] = {p.file for p in problems}
    first_file: dict[str, str] = {}
    dupes: set[str] = set()
    for f in sorted(spec_files, key=lambda f: f.path):
        key = (f.path, f.blob_id, values_id)
        hit = cache.get(key)
        if hit is None:
            cache.parses += 1
            hit = _load_one(f, values, values_ok=not problems)
            cache.put(key, hit)
        app, file_problems = hit
        if not file_problems and app is not None and catalog is not None:
            file_problems = tuple(catalog_mod.check_application(app, catalog))
        if file_problems:
            problems += file_problems
            broken.add(f.path)
            continue
        assert app is not None
        if app.name in first_file:
            first = first_file[app.name]
            problems.append(errors.SpecProblem(
                f.path, app.source.line, "application",
                f"application {app.name!r} is already defined in {first}"))
            if app.name not in dupes:
                problems.append(errors.SpecProblem(
                    first, apps[app.name].source.line, "application",
                    f"application {app.name!r} is also defined in {f.path}"))
                dupes.add(app.name)
                del apps[app.name]
            broken.update({f.path, first})
            continue
        first_file[app.name] = f.path
        apps[app.name] = app
    for name in [n for n, a in apps.items() if a.source.file in broken]:
        del apps[name]
    problems.sort(key=lambda p: (p.file, p.line, p.field))
    if problems:
        log.debug("%d spec problem(s) in %d file(s) at %s", len(problems), len(broken), commit or "(tree)")
    return model.DesiredState(commit=commit, applications=apps, problems=tuple(problems),
                              broken_files=frozenset(broken), notices=notices, unread_files=unread)


def load_directory(root: Path, *, spec_path: str = "apps", cache: SpecCache | None = None,
                   catalog: catalog_mod.Catalog | None = None) -> model.DesiredState:
    """For ``reconciler validate PATH``: PATH is a repo root containing SPEC_PATH, or the spec directory.

    Error file names are relative to the repo root (PATH, or its parent when
    PATH is the spec directory), as the Git source names them. Symbolic links
    are refused like the Git source refuses them, so ``validate`` passes only
    what the daemon will load; a link that leaves PATH is never read. The
    ``policies.yaml`` at the spec root is checked too: a broken one holds
    every change of a pass, so ``validate`` must not call it ok.
    """
    given = root
    root = root.resolve()
    if not root.is_dir():
        raise errors.SpecError([errors.SpecProblem(str(given), 1, "", "no such directory")])
    spec_dir = root / spec_path if spec_path and (root / spec_path).is_dir() else root
    base = root if spec_dir != root else root.parent
    rel_prefix = os.path.relpath(spec_dir, base)
    files: list[SpecFile] = []
    refusals: list[errors.SpecProblem] = []
    for dirpath, dirnames, filenames in os.walk(spec_dir):  # never follows links to directories
        here = Path(dirpath)
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            p = here / name
            rel = os.path.relpath(p, base).replace(os.sep, "/")
            if p.is_symlink():
                target = p.resolve()
                where = "inside" if target.is_relative_to(root) else "outside"
                refusals.append(errors.SpecProblem(
                    rel, 1, "", f"symbolic link to a path {where} {given}; links are not followed in the spec tree"))
                continue
            if not p.is_file():
                continue
            if not catalog_mod.is_spec_file(name):
                files.append(SpecFile(rel, f"path:{rel}:{p.stat().st_mtime_ns}", _reader(p)))
                continue
            size = p.stat().st_size
            if size > MAX_FILE_BYTES:
                files.append(SpecFile(rel, f"size:{size}", _oversize))
                continue
            data = p.read_bytes()
            blob = hashlib.sha1(data).hexdigest()  # noqa: S324 - a content id, like git's, not security
            files.append(SpecFile(rel, blob, _constant(data)))
    prefix = rel_prefix.replace(os.sep, "/") if rel_prefix != "." else ""
    state = load_specs(files, spec_path=prefix, cache=cache, catalog=catalog)
    policies = spec_dir / "policies.yaml"
    if policies.is_file() and not policies.is_symlink():
        name = f"{prefix}/policies.yaml".lstrip("/")
        _, pol_problems = policy_file.load_policy_file(
            policies.read_bytes()[:MAX_FILE_BYTES].decode("utf-8", errors="replace"), file=name)
        refusals += pol_problems
    if refusals:
        problems = sorted(refusals + list(state.problems), key=lambda p: (p.file, p.line, p.field))
        return dataclasses.replace(state, problems=tuple(problems),
                                   broken_files=state.broken_files | {r.file for r in refusals})
    return state


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _reader(p: Path) -> Callable[[], bytes]:
    """A file that is not a spec: only its start is ever looked at."""

    def read() -> bytes:
        with p.open("rb") as f:
            return f.read(catalog_mod.SCAN_BYTES)

    return read


def _oversize() -> bytes:
    """Stands in for a file too large to read: only its length is looked at."""
    return b"\0" * (MAX_FILE_BYTES + 1)


# ---------------------------------------------------------------------------- one file


def _read(f: SpecFile) -> tuple[str | None, errors.SpecProblem | None]:
    data = f.read()
    if len(data) > MAX_FILE_BYTES:
        return None, errors.SpecProblem(
            f.path, 1, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB; not parsed (split it up)")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, errors.SpecProblem(f.path, 1, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")


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
    rendered, problem = _render(f.path, text, values, values_ok=values_ok)
    if problem is not None or rendered is None:
        return None, (problem,) if problem else ()
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
    try:
        return _to_model(doc, lines, f.path), ()
    except (ValueError, TypeError, KeyError) as exc:  # the schema should have caught it; still the file's problem
        log.warning("spec %s passed validation but could not be modelled: %r", f.path, exc)
        return None, (errors.SpecProblem(f.path, 1, "", f"cannot be used: {exc}"),)


def _render(
    path: str, text: str, values: dict[str, Any], *, values_ok: bool
) -> tuple[str | None, errors.SpecProblem | None]:
    """Render one template; any failure is this file's problem, never the caller's exception."""

    def fail(exc: BaseException, message: str) -> tuple[None, errors.SpecProblem]:
        return None, errors.SpecProblem(path, _template_line(exc), "", message)

    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text, None  # nothing to render: skip compiling (a third of a cold load's time)
    try:
        template = _env.from_string(text)
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(values=values):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                return None, errors.SpecProblem(
                    path, 1, "", f"template renders to more than {MAX_RENDERED_CHARS // (1024 * 1024)} MiB")
            chunks.append(chunk)
        return "".join(chunks), None
    except jinja2.TemplateSyntaxError as exc:
        return fail(exc, f"template syntax error: {exc.message}")
    except jinja2.UndefinedError as exc:
        hint = "" if values_ok else " (values.yaml has errors)"
        return fail(exc, f"template: {exc.message}{hint}")
    except jinja2.exceptions.SecurityError as exc:
        return fail(exc, f"template refused by the sandbox: {exc}")
    except jinja2.TemplateError as exc:
        return fail(exc, f"template error: {exc}")
    except RecursionError as exc:
        return fail(exc, "template error: recursion too deep")
    except TypeError as exc:
        if "no loader" in str(exc):  # {% include %}, {% import %}, {% extends %}
            return fail(exc, "template error: include, import and extends are not available in specs")
        return fail(exc, f"template error: {exc}")
    except Exception as exc:  # a template may raise anything: it is the file's problem
        return fail(exc, f"template error: {type(exc).__name__}: {exc}")


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
                tags=tuple(sorted((str(k), _tag_value(v)) for k, v in (c.get("tags") or {}).items())),
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
            source=model.SourceRef(file, yamlnodes.line_of(lines, f"clusters[{i}]"), fields=tuple(
                (path, yamlnodes.line_of(lines, path))
                for path in (f"clusters[{i}].provider", f"clusters[{i}].account",
                             *(f"clusters[{i}].regions[{j}]" for j in range(len(c["regions"]))))
            )),
        ))
    return model.Application(
        name=name, owner=str(doc["owner"]), criticality=model.Criticality(doc.get("criticality", "normal")),
        clusters=tuple(clusters), source=model.SourceRef(file, yamlnodes.line_of(lines, "application")),
    )


def _tag_value(value: Any) -> str:
    """Tag values as written: YAML ``true`` becomes ``"true"``, not Python's ``"True"``."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
