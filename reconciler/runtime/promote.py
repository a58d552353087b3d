"""``reconciler promote APP VERSION``: write a new version where the spec declares it, commit, push.

The commit, not the daemon's memory, is what deploys: the daemon picks it up on its next poll and
moves the version through the environments as their constraints allow. The edited tree is loaded
like the daemon loads it before anything is pushed, so a promotion that would break the
application's spec, or whose image pattern does not resolve in one of its regions, is refused with
the problems.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model
from reconciler.runtime import images as images_rt
from reconciler.runtime import promotion
from reconciler.runtime import providers as providers_mod
from reconciler.source import git as gitsource
from reconciler.source import push
from specs import loader as spec_loader
from specs import renderpool, versionkey


@dataclass(frozen=True, slots=True)
class Request:
    application: str
    version: str
    environment: str | None = None
    message: str = ""
    branch: str | None = None  # push to this new branch (for a pull request) instead of the tracked one
    signing_key: Path | None = None
    author: str = ""  # "Name <email>"


@dataclass(frozen=True, slots=True)
class Outcome:
    pushed: push.Pushed | None  # None: the version was already there
    file: str
    key: str
    previous: str


def promote(config: config_mod.Config, req: Request) -> Outcome:
    if not re.fullmatch(promotion.VERSION_RE, req.version):
        raise errors.ReconcilerError(f"VERSION {req.version!r} is not a version (letters, digits, '.', '_', '+', '-'; "
                                     "at most 128)")
    author = _author(req.author)
    found: dict[str, str] = {}

    def edit(head: str, files: list[gitsource.TreeFile]) -> Mapping[str, bytes]:
        spec_files = [spec_loader.SpecFile(f.path, f.blob_id, f.read) for f in files]
        app = _application(config, spec_files, head, req)
        source = _source(app, req)
        previous = app.version if req.environment is None else \
            next(e.version for e in app.environments if e.name == req.environment)
        found.update(file=source.file, key=source.key, previous=previous)
        if previous == req.version:
            raise _AlreadyThere()
        blob = next((f for f in spec_files if f.path == source.file), None)
        if blob is None:
            raise errors.ReconcilerError(f"{source.file} is not in the repository at {head[:8]}")
        text = blob.read().decode("utf-8")
        new = versionkey.set_scalar(text, source.key, req.version, file=source.file).encode("utf-8")
        changed = [spec_loader.SpecFile(f.path, f.blob_id + "+", _const(new)) if f.path == source.file else f
                   for f in spec_files]
        after = _load(config, changed, head)
        mine = {app.source.file, source.file}
        problems = [str(p) for p in after.problems if p.file in mine]
        if not problems and req.application in after.applications:  # its image must exist in every region
            problems = [str(p) for p in _unresolved(config, after.applications[req.application])]
        if problems or req.application not in after.applications:
            raise errors.ReconcilerError(f"refusing to promote {req.application} to {req.version}: the spec would "
                                         "not load:\n  " + "\n  ".join(problems or ["the application disappears"]))
        return {source.file: new}

    where = f" in {req.environment}" if req.environment else ""
    message = req.message or f"Promote {req.application} to {req.version}{where}"
    try:
        pushed = push.commit_and_push(
            config.repo_url, config.branch, edit, spec_path=config.spec_path, message=message, author=author,
            credentials=config.git, target=req.branch, signing_key=req.signing_key)
    except _AlreadyThere:
        return Outcome(None, found["file"], found["key"], found["previous"])
    return Outcome(pushed, found["file"], found["key"], found["previous"])


class _AlreadyThere(Exception):
    """The branch already declares the version: nothing to commit."""


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _load(config: config_mod.Config, files: list[spec_loader.SpecFile], head: str) -> model.DesiredState:
    pool = renderpool.RenderPool(config.specs)
    try:
        return spec_loader.load_specs(files, spec_path=config.spec_path, commit=head, limits=config.specs, pool=pool)
    finally:
        pool.close()


def _unresolved(config: config_mod.Config, app: model.Application) -> list[errors.SpecProblem]:
    if not any(c.image_pattern is not None for c in app.clusters):
        return []
    providers = providers_mod.Providers(config, clock_mod.SystemClock())
    try:
        return images_rt.unresolved(app, providers.get)
    finally:
        providers.close()


def _application(config: config_mod.Config, files: list[spec_loader.SpecFile], head: str, req: Request
                 ) -> model.Application:
    desired = _load(config, files, head)
    app = desired.applications.get(req.application)
    if app is not None:
        return app
    broken = [str(p) for p in desired.problems]
    near = difflib.get_close_matches(req.application, sorted(desired.applications), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else \
        f"; applications: {', '.join(sorted(desired.applications)) or 'none'}"
    more = ("\n  spec problems there:\n  " + "\n  ".join(broken[:10])) if broken else ""
    raise errors.ReconcilerError(f"APP: no application named {req.application!r} at {head[:8]} of "
                                 f"{config.branch}{hint}{more}")


def _source(app: model.Application, req: Request) -> model.VersionSource:
    if req.environment is not None:
        env = next((e for e in app.environments if e.name == req.environment), None)
        if env is None:
            names = ", ".join(e.name for e in app.environments) or "none"
            raise errors.ReconcilerError(f"--env: {app.name} has no environment named {req.environment!r} "
                                         f"(environments: {names}; {app.source.file})")
        if env.version_source is None:
            raise errors.ReconcilerError(
                f"--env {env.name}: that environment takes the application's version (promote without --env), "
                f"or give it its own version or version_from in {app.source.file}")
        return env.version_source
    if app.version_source is None:
        raise errors.ReconcilerError(f"{app.name} declares no version to promote: add version or version_from "
                                     f"to {app.source.file} (docs/environments.md)")
    return app.version_source


def _author(text: str) -> tuple[str, str]:
    if not text:
        return "reconciler promote", "promote@reconciler.invalid"
    m = re.fullmatch(r"\s*(.+?)\s*<([^<>\s]+)>\s*", text)
    if m is None:
        raise errors.ReconcilerError(f"--author {text!r}: expected 'Name <email>'")
    return m.group(1), m.group(2)
