"""Load a spec tree: render (Jinja2 sandbox, in limited workers) -> parse (safe YAML) -> validate -> model values.

Every problem of every file is collected and reported as
``file:line: field.path: message``; a file with any problem contributes no
application (and is listed in ``broken_files``) while the others load. Nothing
here raises for bad input, however hostile: templates run in ``renderpool``
workers bounded by ``SpecLimits``, YAML nesting and size are bounded, and any
unexpected failure on one file becomes that file's problem. Results are cached
per (path, blob id, values blob id): a pass over an unchanged commit parses
nothing, and a commit that changes one file re-parses one file.

Why it is this long: it is the loading pipeline end to end (the cache, reading files under limits, values,
rendering through the pool, parsing, validation and the model) so that every failure of any stage becomes the
one kind of problem in one place; the stages themselves live in ``renderpool``, ``schema`` and ``limits``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconciler.core import durations, errors, model
from specs import automation as automation_spec
from specs import catalog as catalog_mod
from specs import environments as env_rules
from specs import images as image_spec
from specs import limits as limits_mod
from specs import policy_file, renderpool, resource_checks, sandbox, sharing, yamlnodes
from specs import schema as schema_mod
from specs import strategy as strategy_spec

__all__ = ["MAX_FILE_BYTES", "MAX_RENDERED_CHARS", "SpecCache", "SpecFile", "load_directory", "load_policies",
           "load_specs", "parse_duration"]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = limits_mod.MAX_FILE_BYTES
MAX_RENDERED_CHARS = limits_mod.MAX_RENDERED_CHARS
VALUES_FILE = "values.yaml"
POLICY_FILE = "policies.yaml"
RESERVED = {VALUES_FILE, POLICY_FILE}
"""Files at the spec root that are not application specs."""
MAX_PROBLEMS_PER_FILE = 100
"""More problems than this in one file are counted, not listed: the first ones say what is wrong."""

_Result = tuple[model.Application | None, tuple[errors.SpecProblem, ...]]
_PolicyResult = tuple[policy_file.PolicySettings, tuple[errors.SpecProblem, ...]]


@dataclass(frozen=True, slots=True)
class SpecFile:
    """One file under the spec path, read lazily so a cache hit costs no blob read."""

    path: str
    """Repo-relative, e.g. ``apps/checkout.yaml``; error messages show it."""
    blob_id: str
    """Git blob id, or a sha1 of the content for directories."""
    read: Callable[[], bytes]
    """Called only on a cache miss."""


class Backing(Protocol):
    """Where a ``SpecCache`` keeps its results across processes (``reconciler.state.speccache``)."""

    def use(self, limits: limits_mod.SpecLimits) -> None: ...

    def get_many(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], _Result]: ...

    def put_many(self, items: dict[tuple[str, str, str], _Result]) -> None: ...


@dataclass
class SpecCache:
    """Per-file results keyed by (path, blob id, values blob id); ``parses`` counts real work.

    The path is part of the key because problems name their file: the same
    content at two paths gives two differently worded results. The values
    blob id is part of it because every template may read ``values``. Results
    depend on the limits too (a template may fit 5s but not 2s): loading with
    other limits than the cached results had starts afresh.
    """

    parses: int = 0
    policy_parses: int = 0
    """``policies.yaml`` parses: once per blob, like the specs."""
    max_entries: int = 50_000
    """Least recently used entries go first: a daemon's cache must not grow with every commit forever."""
    backing: Backing | None = None
    """Results kept across processes: read before parsing, written after (one transaction a load)."""
    loaded: int = 0
    """Results read from ``backing`` instead of parsed."""
    _entries: OrderedDict[tuple[str, str, str], _Result] = field(default_factory=OrderedDict)
    _policies: OrderedDict[tuple[str, str], _PolicyResult] = field(default_factory=OrderedDict)
    _limits: limits_mod.SpecLimits | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _unread: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    _pending: dict[tuple[str, str, str], _Result] = field(default_factory=dict)
    _no_policies: dict[str, policy_file.PolicySettings] = field(default_factory=dict)

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
            if self.backing is not None:
                self._pending[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def use(self, limits: limits_mod.SpecLimits) -> None:
        """Forget results made under other limits."""
        with self._lock:
            if self._limits != limits:
                self._entries.clear()
                self._policies.clear()
                self._pending.clear()
                self._limits = limits
                if self.backing is not None:
                    self.backing.use(limits)

    def preload(self, keys: Sequence[tuple[str, str, str]]) -> None:
        """Bring what ``backing`` has of ``keys`` into memory, in one read."""
        if self.backing is None:
            return
        with self._lock:
            missing = [k for k in keys if k not in self._entries]
        found = self.backing.get_many(missing) if missing else {}
        with self._lock:
            for key, value in found.items():
                self._entries[key] = value
            self.loaded += len(found)

    def flush(self) -> None:
        """Write the results made since the last flush to ``backing``."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending and self.backing is not None:
            self.backing.put_many(pending)

    def policy(self, key: tuple[str, str], make: Callable[[], _PolicyResult]) -> _PolicyResult:
        with self._lock:
            hit = self._policies.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                self.policy_parses += 1
                self._policies[key] = hit
                while len(self._policies) > 8:
                    self._policies.popitem(last=False)
        return hit

    def no_policies(self, name: str) -> policy_file.PolicySettings:
        """The built-in layers of a tree without ``policies.yaml``: one object for every load, so what the
        memos keep (the verdicts' inputs) is the settings the evaluation holds, with its resolved layers,
        not an equal copy with copies of them."""
        with self._lock:
            hit = self._no_policies.get(name)
            if hit is None:
                hit = self._no_policies[name] = policy_file.PolicySettings(file=name)
            return hit

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
        return durations.parse_duration(text, where=field)
    except errors.ConfigError as exc:
        raise ValueError(str(exc)) from exc


def load_specs(
    files: Sequence[SpecFile], *, spec_path: str = "apps", commit: str = "", cache: SpecCache | None = None,
    limits: limits_mod.SpecLimits | None = None, pool: renderpool.RenderPool | None = None,
    catalog: catalog_mod.Catalog | None = None,
) -> model.DesiredState:
    """The desired state of one tree: every spec file under ``spec_path`` rendered, parsed and validated.

    ``files`` is every file under ``spec_path``: ``.yaml``/``.yml`` in any
    letter case are specs, the reserved ``values.yaml``/``policies.yaml`` at its
    root are skipped, and every other file is reported in ``notices`` and
    ``unread_files`` (pruning is held for the applications it may define).
    With a ``catalog``, a cluster naming an unknown provider, an unconfigured
    account or a region its account does not allow is its file's problem.
    Templates render in ``pool`` (default: the process-wide pool for
    ``limits``). Never raises for bad input: problems come back in
    ``DesiredState.problems`` (sorted by file, then line) and their files in
    ``broken_files``.
    """
    limits = limits or limits_mod.SpecLimits()
    cache = cache if cache is not None else SpecCache()
    cache.use(limits)
    root = spec_path.strip("/")
    prefix = f"{root}/" if root else ""
    if len(files) > limits.max_files:
        problem = limits_mod.tree_problem(root, len(files), 0, limits, complete=True) or ""
        return _refused(commit, root, problem)
    values_name = f"{prefix}{VALUES_FILE}"
    values_file = next((f for f in files if f.path == values_name), None)
    problems: list[errors.SpecProblem] = []
    values: dict[str, Any] = {}
    values_id = ""
    if values_file is not None:
        values_id = values_file.blob_id
        values, vproblems = _load_values(values_file)
        problems += vproblems
    spec_files = sorted((f for f in files
                         if catalog_mod.is_spec_file(f.path) and f.path[len(prefix):] not in RESERVED),
                        key=lambda f: f.path)
    unread = {f.path: cache.unread_apps(f) for f in files if not catalog_mod.is_spec_file(f.path)}
    notices = tuple(catalog_mod.unread_notice(path, apps) for path, apps in sorted(unread.items()))
    parses, loaded = cache.parses, cache.loaded
    results = _results(spec_files, values, values_id, values_ok=not problems, cache=cache,
                       pool=pool or renderpool.shared(limits), values_file=values_name)
    log.debug("specs: %d file(s) parsed, %d read from the spec cache, %d of %d in memory already",
              cache.parses - parses, cache.loaded - loaded,
              len(spec_files) - (cache.parses - parses) - (cache.loaded - loaded), len(spec_files))
    apps: dict[str, model.Application] = {}
    broken: set[str] = {p.file for p in problems}
    first_file: dict[str, str] = {}
    dupes: set[str] = set()
    for f in spec_files:
        app, file_problems = results[f.path]
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
    for dep_problem in env_rules.check_dependencies(apps):  # across files: names and cycles
        problems.append(dep_problem)
        broken.add(dep_problem.file)
    for name in [n for n, a in apps.items() if a.source.file in broken]:
        del apps[name]
    problems.sort(key=lambda p: (p.file, p.line, p.field))
    if problems:
        log.debug("%d spec problem(s) in %d file(s) at %s", len(problems), len(broken), commit or "(tree)")
    return model.DesiredState(commit=commit, applications=apps, problems=tuple(problems),
                              broken_files=frozenset(broken), notices=notices, unread_files=unread)


def _results(files: Sequence[SpecFile], values: dict[str, Any], values_id: str, *, values_ok: bool,
             cache: SpecCache, pool: renderpool.RenderPool, values_file: str = VALUES_FILE) -> dict[str, _Result]:
    """Every file's result: from the cache, or read and finished here, or rendered by the pool first.

    Rendering runs in the pool's workers while this thread parses and
    validates what they have already rendered.
    """
    out: dict[str, _Result] = {}
    jobs: list[renderpool.Job] = []
    table: dict[Any, Any] = {}  # equal texts of the files parsed here: one object each
    cache.preload([(f.path, f.blob_id, values_id) for f in files])
    for f in files:
        key = (f.path, f.blob_id, values_id)
        hit = cache.get(key)
        if hit is not None:
            out[f.path] = hit
            continue
        cache.parses += 1
        text, problem = _read(f)
        if problem is not None or text is None:
            out[f.path] = (None, (problem,) if problem else ())
        elif sandbox.has_markup(text):
            jobs.append(renderpool.Job(f.path, text, values_id, values, values_ok))
            continue
        else:
            out[f.path] = _shared(_finish(f.path, text, values, values_file), table)
        cache.put(key, out[f.path])
    blob = {f.path: f.blob_id for f in files}
    for index, outcome in pool.render(jobs):
        path = jobs[index].path
        if outcome.problem is not None or outcome.text is None:
            problem = outcome.problem or errors.SpecProblem(path, 1, "", "template produced nothing")
            result: _Result = (None, (problem,))
        else:
            result = _shared(_finish(path, outcome.text, values, values_file), table)
        out[path] = result
        if outcome.lasting:
            cache.put((path, blob[path], values_id), result)
    cache.flush()
    return out


def _shared(result: _Result, table: dict[Any, Any]) -> _Result:
    if result[0] is not None:
        sharing.share_texts(result[0], table)
    return result


def load_policies(files: Sequence[SpecFile], *, spec_path: str = "apps", cache: SpecCache | None = None
                  ) -> tuple[policy_file.PolicySettings, list[errors.SpecProblem]]:
    """``policies.yaml`` at the spec root (absent: the built-in defaults), parsed once per blob id.

    The same limits as a spec: at most ``MAX_FILE_BYTES``, UTF-8, nesting and
    size bounded by the YAML reader; every problem names the file.
    """
    name = f"{spec_path.strip('/')}/{POLICY_FILE}".lstrip("/")
    found = next((f for f in files if f.path == name), None)
    if found is None:
        return (cache.no_policies(name) if cache is not None else policy_file.PolicySettings(file=name)), []
    cache = cache if cache is not None else SpecCache()

    def parse() -> _PolicyResult:
        text, problem = _read(found)
        if problem is not None or text is None:
            problems = [problem] if problem else []
            return policy_file.PolicySettings(file=name, problems=tuple(problems)), tuple(problems)
        try:
            settings, problems = policy_file.load_policy_file(text, file=name)
            problems = list(_capped(problems))
        except Exception as exc:  # never past the spec layer: it is the file's problem
            log.exception("%s could not be read", name)
            problem = errors.SpecProblem(name, 1, "", f"cannot be used: {type(exc).__name__}: {exc}")
            return policy_file.PolicySettings(file=name, problems=(problem,)), (problem,)
        return settings, tuple(problems)

    settings, problems = cache.policy((found.path, found.blob_id), parse)
    return settings, list(problems)


def load_directory(root: Path, *, spec_path: str = "apps", cache: SpecCache | None = None,
                   limits: limits_mod.SpecLimits | None = None,
                   catalog: catalog_mod.Catalog | None = None) -> model.DesiredState:
    """For ``reconciler validate PATH``: PATH is a repo root containing SPEC_PATH, or the spec directory.

    Error file names are relative to the repo root (PATH, or its parent when
    PATH is the spec directory), as the Git source names them. Symbolic links
    are refused like the Git source refuses them, so ``validate`` passes only
    what the daemon will load; a link that leaves PATH is never read. The
    tree limits (``specs.max_files``, ``specs.max_total_size``) apply as in
    the Git source, and ``policies.yaml`` is validated too.
    """
    limits = limits or limits_mod.SpecLimits()
    given = root
    root = root.resolve()
    if not root.is_dir():
        problem = errors.SpecProblem(str(given), 1, "", "no such directory")
        return model.DesiredState("", {}, (problem,), frozenset({problem.file}))
    spec_dir = root / spec_path if spec_path and (root / spec_path).is_dir() else root
    base = root if spec_dir != root else root.parent
    rel_prefix = _rel(spec_dir, base)
    rel_prefix = "" if rel_prefix == "." else rel_prefix
    found: list[tuple[str, Path, int]] = []
    refusals: list[errors.SpecProblem] = []
    count, total, complete = 0, 0, True
    stack = [spec_dir]  # no recursion: directories may nest very deep
    while stack and complete:
        here = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            refusals.append(errors.SpecProblem(_rel(here, base), 1, "", f"cannot be read: {exc.strerror}"))
            continue
        for entry in entries:
            p = Path(entry.path)
            rel = _rel(p, base)
            refused = limits_mod.name_problem(entry.name)
            if refused:
                refusals.append(errors.SpecProblem(rel, 1, "", refused))
            elif entry.is_symlink():
                target = p.resolve()
                where = "inside" if target.is_relative_to(root) else "outside"
                refusals.append(errors.SpecProblem(
                    rel, 1, "", f"symbolic link to a path {where} {given}; links are not followed in the spec tree"))
            elif entry.is_dir(follow_symlinks=False):
                stack.append(p)
            elif entry.is_file(follow_symlinks=False):
                size = entry.stat(follow_symlinks=False).st_size
                count, total = count + 1, total + size
                found.append((rel, p, size))
                if count > 10 * limits.max_files:
                    complete = False
                    break
    over = limits_mod.tree_problem(rel_prefix, count, total, limits, complete=complete)
    if over:
        return _refused("", rel_prefix, over)
    files: list[SpecFile] = []
    for rel, p, size in found:
        if not catalog_mod.is_spec_file(rel):
            files.append(SpecFile(rel, f"path:{rel}:{p.stat().st_mtime_ns}", _reader(p)))
            continue
        if size > MAX_FILE_BYTES:
            files.append(SpecFile(rel, f"size:{size}", _oversize))
            continue
        try:
            data = p.read_bytes()
        except OSError as exc:
            refusals.append(errors.SpecProblem(rel, 1, "", f"cannot be read: {exc.strerror}"))
            continue
        blob = hashlib.sha1(data).hexdigest()  # noqa: S324 - a content id, like git's, not security
        files.append(SpecFile(rel, blob, _constant(data)))
    state = load_specs(files, spec_path=rel_prefix, cache=cache, limits=limits, catalog=catalog)
    _settings, policy_problems = load_policies(files, spec_path=rel_prefix, cache=cache)
    extra = refusals + policy_problems
    if extra:
        problems = sorted(extra + list(state.problems), key=lambda p: (p.file, p.line, p.field))
        return dataclasses.replace(state, problems=tuple(problems),
                                   broken_files=state.broken_files | {r.file for r in extra})
    return state


def _rel(p: Path, base: Path) -> str:
    return os.path.relpath(p, base).replace(os.sep, "/")


def _refused(commit: str, root: str, message: str) -> model.DesiredState:
    """A whole tree not loaded: one problem on the spec directory; nothing may be pruned."""
    where = root or "."
    return model.DesiredState(commit, {}, (errors.SpecProblem(where, 1, "", message),), frozenset({where}))


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
    try:
        data = f.read()
    except Exception as exc:  # a blob the object database cannot produce: this file's problem, not the pass's
        log.warning("%s cannot be read: %r", f.path, exc)
        return None, errors.SpecProblem(f.path, 1, "", f"cannot be read: {type(exc).__name__}: {exc}")
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
        return {}, list(_capped(exc.problems))
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [errors.SpecProblem(f.path, 1, "", "values.yaml must be a mapping of names to values")]
    return value, []


def _capped(problems: Sequence[errors.SpecProblem]) -> tuple[errors.SpecProblem, ...]:
    """At most ``MAX_PROBLEMS_PER_FILE``, then one line that says how many more there are."""
    if len(problems) <= MAX_PROBLEMS_PER_FILE:
        return tuple(problems)
    last = problems[MAX_PROBLEMS_PER_FILE - 1]
    more = errors.SpecProblem(last.file, last.line, last.field,
                              f"... and {len(problems) - MAX_PROBLEMS_PER_FILE:,} more problems in this file")
    return (*problems[:MAX_PROBLEMS_PER_FILE], more)


def _finish(path: str, rendered: str, values: dict[str, Any] | None = None, values_file: str = VALUES_FILE
            ) -> _Result:
    """Rendered text -> parsed, validated, modelled; an unexpected failure is still only this file's problem."""
    try:
        return _parse(path, rendered, values or {}, values_file)
    except Exception as exc:
        log.exception("%s could not be loaded", path)
        return None, (errors.SpecProblem(path, 1, "", f"cannot be used: {type(exc).__name__}: {exc}"),)


def _parse(path: str, rendered: str, values: dict[str, Any], values_file: str) -> _Result:
    try:
        doc, lines = yamlnodes.load_yaml_with_lines(rendered, file=path)
    except errors.SpecError as exc:
        return None, _capped(exc.problems)
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else type(doc).__name__
        return None, (errors.SpecProblem(path, 1, "", f"a spec must be a mapping with an application, got {kind}"),)
    problems = schema_mod.validate(doc, lines, file=path)
    if not problems:
        env_rules.check_values(doc, values, lambda at, why: problems.append(
            errors.SpecProblem(path, yamlnodes.line_of(lines, at), at, why)))
    if problems:
        return None, _capped(problems)
    try:
        return _to_model(doc, lines, path, values, values_file), ()
    except (ValueError, TypeError, KeyError) as exc:  # the schema should have caught it; still the file's problem
        log.warning("spec %s passed validation but could not be modelled: %r", path, exc)
        return None, (errors.SpecProblem(path, 1, "", f"cannot be used: {exc}"),)


def _to_model(doc: dict[str, Any], lines: dict[str, int], file: str, values: dict[str, Any] | None = None,
              values_file: str = VALUES_FILE) -> model.Application:
    name = doc["application"]
    values = values or {}

    def line(path: str) -> int:
        return yamlnodes.line_of(lines, path)

    version, version_source = env_rules.version(doc, values, file=file, values_file=values_file, at="", line=line)
    envs = env_rules.environments(doc, values, file=file, values_file=values_file, line=line,
                                  seconds=lambda v: parse_duration(v, field="soak"))
    env_by_name = {e.name: e for e in envs}
    clusters = []
    for at, c in env_rules.all_clusters(doc):
        env_name = str(doc["environments"][int(at[13:at.index("]")])]["name"]) if at.startswith("environments[") \
            else ""
        env = env_by_name.get(env_name)
        cluster_version = (env.version if env is not None and env.version else "") or version
        cap = c["capacity"]
        health = c.get("health") or {}
        strat = c.get("strategy") or {}
        rollout = c.get("rollout") or {}
        image, pattern = image_spec.to_model(c["image"], functools.partial(_fill, version=cluster_version))
        clusters.append(model.ClusterSpec(
            application=name,
            stack=str(c.get("stack") or ""),
            detail=str(c.get("detail") or ""),
            provider=c["provider"],
            account=str(c["account"]),
            regions=tuple(c["regions"]),
            launch=model.LaunchSpec(
                image=image,
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
            strategy=strategy_spec.to_model(strat),
            rollout=model.Rollout(
                waves=tuple(tuple(w) for w in rollout.get("waves") or ()),
                pause_s=parse_duration(rollout.get("pause", 0), field="rollout.pause"),
            ),
            source=model.SourceRef(file, line(at), fields=tuple(
                (path, line(path))
                for path in (f"{at}.provider", f"{at}.account", f"{at}.image", f"{at}.load_balancers",
                             f"{at}.security_groups", *((f"{at}.strategy",) if "canary" in strat else ()),
                             *(f"{at}.regions[{j}]" for j in range(len(c["regions"]))),
                             *(f"{at}.strategy.verify[{j}]" for j in range(len(strat.get("verify") or ()))))
            )),
            environment=env_name,
            image_pattern=pattern,
        ))
    return model.Application(
        name=name, owner=str(doc["owner"]), criticality=model.Criticality(doc.get("criticality", "normal")),
        clusters=tuple(clusters), source=model.SourceRef(file, line("application")),
        resources=resource_checks.to_model(doc, lines, file, tuple(clusters)),
        version=version, version_source=version_source, environments=envs,
        depends_on=tuple(model.Dependency(str(d["application"]), str(d["environment"]), line(f"depends_on[{i}]"))
                         for i, d in enumerate(doc.get("depends_on") or ())),
        automation=automation_spec.to_model(doc.get("automation"), line("automation")),
    )


def _fill(text: str, *, version: str) -> str:
    return env_rules.with_version(text, version)


def _tag_value(value: Any) -> str:
    """Tag values as written: YAML ``true`` becomes ``"true"``, not Python's ``"True"``."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
