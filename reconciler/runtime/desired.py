"""Reading the desired state: the commit in force, and the specs and policy file at a commit.

On any source error (unreachable, force-pushed without ``repo.allow_force_push``, a tree over
the spec limits) the last good commit stays in force and the error is kept for status. Specs
are cached by blob id, so a pass on an unchanged commit parses nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from policies import base as policy_base
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors, model
from reconciler.runtime import images as images_rt
from reconciler.runtime import providers as providers_mod
from reconciler.source import git as gitsource
from reconciler.state import keys, speccache
from reconciler.state import store as store_mod
from specs import limits as spec_limits
from specs import loader as spec_loader
from specs import policy_file, renderpool

log = logging.getLogger("reconciler.engine")  # the name log filters know


class TreeReader(Protocol):
    """The mirror or a local checkout (``plan --ref`` on a local repository)."""

    def tree_files(self, commit: str, spec_path: str, limits: spec_limits.SpecLimits | None = None
                   ) -> tuple[list[gitsource.TreeFile], list[gitsource.Refusal]]: ...

    def resolve(self, ref: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Desired:
    """The desired state at one commit and the policy file beside it."""

    state: model.DesiredState
    policies: policy_file.PolicySettings


class DesiredSource:
    def __init__(self, config: Callable[[], config_mod.Config], store: store_mod.Store, clock: clock_mod.Clock,
                 providers: providers_mod.Providers) -> None:
        cfg = config()
        self._config = config
        self.store = store
        self.clock = clock
        self.providers = providers
        self.git = gitsource.GitSource(cfg.repo_url, cfg.branch, mirror_root=cfg.state_dir, credentials=cfg.git)
        self.spec_store = speccache.open_beside(cfg.state_dir)  # validated specs kept across runs
        self.cache = spec_loader.SpecCache(backing=self.spec_store)
        self.images: images_rt.Reuse = {}  # an application whose patterns resolve as last time is the same object
        self.last_read_ok: float | None = None
        self._renderer: renderpool.RenderPool | None = None
        self._renderer_lock = threading.Lock()

    def reconfigure(self, new: config_mod.Config) -> None:
        self.git.branch = new.branch
        self.git.credentials = new.git

    def renderer(self) -> renderpool.RenderPool:
        """The template rendering workers, started on first use and replaced when a reload changed the limits."""
        with self._renderer_lock:
            if self._renderer is None or self._renderer.limits != self._config().specs:
                if self._renderer is not None:
                    self._renderer.close()
                self._renderer = renderpool.RenderPool(self._config().specs)
            return self._renderer

    def fetch(self) -> tuple[str | None, str | None]:
        """(commit in force, source error). On any error the last good commit stays in force."""
        cfg = self._config()
        now = self.clock.now()
        last_good: str | None = self.store.get(keys.LAST_GOOD)
        try:
            res = self.git.fetch(last_good)
        except errors.SourceError as exc:
            self.store.put(keys.SOURCE_ERROR, str(exc), now)
            log.error("%s; keeping %s", exc, (last_good or "nothing")[:8])
            return last_good, str(exc)
        if res.force_pushed and not cfg.allow_force_push and last_good:
            msg = (f"branch {cfg.branch} was force-pushed: {res.head[:8]} does not descend from "
                   f"{last_good[:8]}; keeping {last_good[:8]} in force (set repo.allow_force_push: true "
                   "to follow rewritten history)")
            self.store.put(keys.SOURCE_ERROR, msg, now)
            log.error("%s", msg)
            return last_good, msg
        try:  # a tree over the spec limits is refused whole, like a force-push: nothing of it is used
            self.git.tree_files(res.head, cfg.spec_path, cfg.specs)
        except gitsource.TreeTooLarge as exc:
            msg = f"{exc}; keeping {(last_good or 'nothing')[:8]} in force"
            self.store.put(keys.SOURCE_ERROR, msg, now)
            log.error("%s", msg)
            return last_good, msg
        self.store.put(keys.SOURCE_ERROR, None, now)
        self.last_read_ok = now
        return res.head, None

    def at(self, commit: str, reader: TreeReader | None = None, *, check_accounts: bool = True,
           resolve_images: bool = True) -> Desired:
        """Specs and the policy file at ``commit`` (from the mirror, or another reader).

        A cluster naming an unknown provider (or, with ``check_accounts``, an account the config does
        not have, or a region the account does not allow) makes its file a spec problem: the
        application is held whole instead of half its clusters looking deleted. Image patterns are
        resolved per region through the providers (``resolve_images``; else shown as written).
        """
        cfg = self._config()
        src = reader or self.git
        files, refusals = src.tree_files(commit, cfg.spec_path, cfg.specs)
        spec_files = [spec_loader.SpecFile(path=f.path, blob_id=f.blob_id, read=f.read) for f in files]
        pool = self.renderer()
        desired = spec_loader.load_specs(
            spec_files, spec_path=cfg.spec_path, commit=commit, cache=self.cache,
            limits=pool.limits, pool=pool, catalog=self.providers.catalog(accounts=check_accounts),
        )
        if pool.closed:  # closed meanwhile (stopping, or a reload changed the limits): no half-rendered state
            raise errors.ReconcilerError("stopping: this pass was cut short while rendering templates")
        extra = [errors.SpecProblem(path, 1, "", why) for path, why in refusals]
        pol, problems = spec_loader.load_policies(spec_files, spec_path=cfg.spec_path, cache=self.cache)
        extra += problems
        if extra:
            desired = dataclasses.replace(
                desired,
                problems=tuple(desired.problems) + tuple(extra),
                broken_files=desired.broken_files | {p.file for p in extra},
            )
        desired = (images_rt.resolve(desired, self.providers.get, self.images) if resolve_images
                   else images_rt.preview(desired))
        return Desired(desired, pol)

    def signature(self, commit: str, policies: policy_file.PolicySettings) -> policy_base.Signature | None:
        """Verify the commit's signature only when policies.yaml requires signed commits."""
        if not commit or not policies.global_settings()["signed_commits"]["required"]:
            return None
        if not self.git.has_commit(commit):
            return policy_base.Signature(False, "", f"commit {commit[:8]} is not in the mirror")
        sig = self.git.verify_signature(commit, self._config().allowed_signers)
        return policy_base.Signature(sig.verified, sig.key, sig.reason)

    def remember_file_apps(self, desired: model.DesiredState) -> None:
        """File -> application, so a file that stops parsing still names its application in status."""
        known: dict[str, str] = self.store.get(keys.FILE_APPS, {}) or {}
        fresh = {app.source.file: name for name, app in desired.applications.items()}
        merged = {**{f: a for f, a in known.items() if f in desired.broken_files}, **fresh}
        if merged != known:
            self.store.put(keys.FILE_APPS, merged, self.clock.now())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()  # first: a pass stuck on a template returns at once
        self.spec_store.close()
