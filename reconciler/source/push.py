"""Commit an edit of the desired-state repository and push it: what ``reconciler promote`` does from CI.

The edit is a function of the files at the branch head, so a push rejected because someone pushed
first is fetched and the edit made again on top of their commit, then pushed again. Nothing needs a
work tree: a scratch bare repository fetches the branch, the new tree is written from blobs, the
commit is signed with ``ssh-keygen -Y sign`` when a key is given, and pygit2 pushes it (any URL the
daemon reads: a path, ``file://``, ``git://``, ``https://``, ``ssh://``).
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2

from reconciler import logs
from reconciler.config import settings as config_mod
from reconciler.core import errors
from reconciler.source import git as gitsource

log = logging.getLogger(__name__)

Edit = Callable[[str, list[gitsource.TreeFile]], Mapping[str, bytes]]
"""(head commit, files under the spec path there) -> {path: new content}; raises ReconcilerError to refuse."""


@dataclass(frozen=True, slots=True)
class Pushed:
    commit: str
    branch: str
    attempts: int
    signed: bool


_REJECTED = ("fast-forward", "fastforward", "rejected", "fetch first", "not present locally")
"""How libgit2 and servers word a push refused because the branch moved."""


class Rejected(errors.SourceError):
    """The remote refused the push (someone pushed first, or a protected branch)."""


class _PushCallbacks(gitsource._Callbacks):
    def __init__(self, creds: config_mod.GitCredentials) -> None:
        super().__init__(creds)
        self.refused: list[str] = []

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.refused.append(f"{refname}: {message}")


def commit_and_push(url: str, branch: str, edit: Edit, *, spec_path: str, message: str, author: tuple[str, str],
                    credentials: config_mod.GitCredentials | None = None, target: str | None = None,
                    signing_key: Path | None = None, attempts: int = 5) -> Pushed:
    """Apply ``edit`` on top of ``branch`` and push the commit to ``target`` (default: ``branch`` itself)."""
    creds = credentials or config_mod.GitCredentials()
    target = target or branch
    with tempfile.TemporaryDirectory(prefix="reconciler-promote-") as tmp:
        repo = pygit2.init_repository(tmp, bare=True)
        remote = repo.remotes.create("origin", url)
        last = ""
        for attempt in range(1, attempts + 1):
            head = _fetch(repo, remote, branch, creds, url)
            files, _refused = gitsource.tree_files(repo, head, spec_path)
            changes = edit(head, files)
            tree = _tree_with(repo, repo[head].peel(pygit2.Commit).tree, changes)
            oid = _commit(repo, tree, head, message, pygit2.Signature(*author), signing_key)
            repo.references.create("refs/heads/promote", oid, force=True)
            try:
                _push(remote, f"+refs/heads/promote:refs/heads/{target}" if target != branch
                      else f"refs/heads/promote:refs/heads/{target}", creds, url)
            except Rejected as exc:
                last = str(exc)
                if target != branch:
                    raise
                log.warning("push to %s was rejected (attempt %d of %d): %s; fetching and retrying on top",
                            branch, attempt, attempts, exc)
                continue
            return Pushed(str(oid), target, attempt, signing_key is not None)
    raise errors.SourceError(f"the push to {branch} of {url} was rejected {attempts} times (last: {last}); "
                             "nothing was lost: run the same command again")


def _fetch(repo: pygit2.Repository, remote: pygit2.Remote, branch: str, creds: config_mod.GitCredentials,
           url: str) -> str:
    try:
        remote.fetch([f"+refs/heads/{branch}:refs/remotes/origin/{branch}"], callbacks=gitsource._Callbacks(creds))
    except (pygit2.GitError, KeyError) as exc:
        raise errors.SourceError(f"cannot fetch {branch} from {url}: {logs.redact(str(exc))}") from exc
    ref = f"refs/remotes/origin/{branch}"
    if ref not in repo.references:
        raise errors.SourceError(f"{url} has no branch {branch!r} (repo.branch, or --branch-from)")
    return str(repo.references[ref].target)


def _tree_with(repo: pygit2.Repository, tree: pygit2.Tree | None, changes: Mapping[str, bytes]) -> pygit2.Oid:
    """``tree`` with each path's blob replaced (or added), directories rebuilt bottom up."""
    here: dict[str, bytes] = {}
    below: dict[str, dict[str, bytes]] = {}
    for path, data in changes.items():
        head, _, rest = path.partition("/")
        if rest:
            below.setdefault(head, {})[rest] = data
        else:
            here[head] = data
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    for name, data in here.items():
        builder.insert(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    for name, sub in below.items():
        existing = tree[name] if tree is not None and name in tree else None
        subtree = repo[existing.id] if existing is not None else None
        oid = _tree_with(repo, subtree if isinstance(subtree, pygit2.Tree) else None, sub)
        builder.insert(name, oid, pygit2.enums.FileMode.TREE)
    return builder.write()


def _commit(repo: pygit2.Repository, tree: pygit2.Oid, parent: str, message: str, author: pygit2.Signature,
            signing_key: Path | None) -> pygit2.Oid:
    parents: list[str | pygit2.Oid] = [pygit2.Oid(hex=parent)]
    if signing_key is None:
        return repo.create_commit(None, author, author, message, tree, parents)
    content = str(repo.create_commit_string(author, author, message, tree, parents))  # a str, whatever stubs say
    try:
        res = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(signing_key), "-n", "git"],
                             input=content.encode(), capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.ReconcilerError(f"cannot sign the commit with {signing_key}: {exc}") from exc
    if res.returncode != 0:
        raise errors.ReconcilerError(f"cannot sign the commit with {signing_key} (--signing-key): "
                                     f"{res.stderr.decode(errors='replace').strip()}")
    return repo.create_commit_with_signature(content, res.stdout.decode())


def _push(remote: pygit2.Remote, refspec: str, creds: config_mod.GitCredentials, url: str) -> None:
    callbacks = _PushCallbacks(creds)
    try:
        remote.push([refspec], callbacks=callbacks)
    except pygit2.GitError as exc:
        text = logs.redact(str(exc))
        if any(word in text.lower() for word in _REJECTED):
            raise Rejected(text) from exc
        raise errors.SourceError(f"cannot push to {url}: {text}") from exc
    if callbacks.refused:
        raise Rejected("; ".join(callbacks.refused))
