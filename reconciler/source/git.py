"""The Git source: a bare mirror of the desired-state repository, read without a checkout.

Only this module touches pygit2. The daemon fetches the tracked branch into
``refs/remotes/origin/<branch>`` of a mirror kept in the state directory and
reads the spec tree at that commit straight from the object database. Spec
files are identified by blob id, so the spec cache skips unchanged files.

Why it is this long: by contract (``.importlinter``) this is the only module that imports pygit2, so
everything done with Git lives here: fetching with credentials and known hosts, reading the tree under limits,
commit details and signature verification.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from reconciler import logs
from reconciler.config import settings as config_mod
from reconciler.core import errors
from specs import limits as limits_mod

log = logging.getLogger("reconciler.gitsource")  # the name log filters know; kept when the module moved

ENV_TOKEN = "RECONCILER_GIT_TOKEN"  # noqa: S105 - the name of a variable, not a secret

_SYMLINK = 0o120000
_TREE = 0o040000
_COMMIT = 0o160000


@dataclass(frozen=True, slots=True)
class TreeFile:
    """A file of the spec tree at one commit (``read`` is called only on a cache miss)."""

    path: str
    blob_id: str
    read: Callable[[], bytes]


Refusal = tuple[str, str]
"""(path, why): a file of the spec tree that is not read."""


class TreeTooLarge(errors.SourceError):
    """A commit whose spec tree is over ``specs.max_files`` or ``specs.max_total_size``: it is not used."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    head: str
    previous: str | None
    force_pushed: bool


@dataclass(frozen=True, slots=True)
class Signature:
    verified: bool
    key: str
    reason: str


def is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials from the config's files (or the ssh-agent, or ``$RECONCILER_GIT_TOKEN``), never from the URL.

    libgit2 asks again after a refusal; the second refusal ends the fetch with a message naming the source
    of the credentials, so a wrong token is reported instead of replayed.
    """

    def __init__(self, creds: config_mod.GitCredentials) -> None:
        super().__init__()
        self.creds = creds
        self.asked = 0

    def certificate_check(self, certificate: Any, valid: bool, host: bytes) -> bool:
        """Only what libgit2 verified: TLS against the CA store, SSH against known_hosts.

        pygit2's default lets every SSH host key through; a desired-state repository must not.
        """
        return bool(valid)

    def credentials(self, url: str, username_from_url: str | None, allowed_types: Any) -> Any:
        self.asked += 1
        kinds = pygit2.enums.CredentialType
        user = self.creds.username or username_from_url or ""
        if allowed_types & kinds.SSH_KEY:
            key = self.creds.ssh_key_file
            if self.asked > 1:
                raise errors.SourceError(f"the server refused the SSH key ({key or 'from the ssh-agent'}) for "
                                         f"user {user or 'git'} (repo.ssh_key_file)")
            if key is None:
                return pygit2.KeypairFromAgent(user or "git")
            pub = self.creds.ssh_public_key_file
            if pub is None and key.with_name(key.name + ".pub").exists():
                pub = key.with_name(key.name + ".pub")
            for f in (key, pub):
                if f is not None and not os.access(f, os.R_OK):
                    raise errors.SourceError(f"cannot read the SSH key file {f} (repo.ssh_key_file)")
            return pygit2.Keypair(user or "git", str(pub) if pub else None, str(key), "")
        if allowed_types & kinds.USERPASS_PLAINTEXT:
            token, where = _token(self.creds)
            if self.asked > 1:
                raise errors.SourceError(f"the server refused the credentials for user "
                                         f"{user or 'x-access-token'} ({where})")
            return pygit2.UserPass(user or "x-access-token", token)
        if allowed_types & kinds.USERNAME:
            return pygit2.Username(user or "git")
        return None


def _token(creds: config_mod.GitCredentials) -> tuple[str, str]:
    """The https password: ``repo.token_file`` (read now: rotation needs no restart), the URL's, or the env."""
    if creds.token_file is not None:
        try:
            token = creds.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise errors.SourceError(f"cannot read repo.token_file {creds.token_file}: {why}") from exc
        if not token:
            raise errors.SourceError(f"repo.token_file {creds.token_file} is empty")
        logs.register_secret(token)
        return token, f"repo.token_file {creds.token_file}"
    if creds.token:
        return creds.token, "the password in repo.url"
    token = os.environ.get(ENV_TOKEN, "")
    logs.register_secret(token)
    return token, f"${ENV_TOKEN}" if token else f"no credentials: set repo.token_file or ${ENV_TOKEN}"


_homedir_lock = threading.Lock()


@contextmanager
def _known_hosts(creds: config_mod.GitCredentials, scratch: Path) -> Iterator[None]:
    """libgit2 checks SSH host keys against ``$HOME/.ssh/known_hosts``: point its home at a copy of ours.

    libgit2's home directory is process-wide, so fetches with a configured file take a lock.
    """
    if creds.ssh_known_hosts is None:
        yield
        return
    try:
        data = creds.ssh_known_hosts.read_bytes()
    except OSError as exc:
        raise errors.SourceError(f"cannot read repo.ssh_known_hosts {creds.ssh_known_hosts}: "
                                 f"{exc.strerror}") from exc
    with _homedir_lock:
        ssh_dir = scratch / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (ssh_dir / "known_hosts").write_bytes(data)
        previous = pygit2.settings.homedir
        pygit2.settings.homedir = str(scratch)
        try:
            yield
        finally:
            if previous is not None:
                pygit2.settings.homedir = previous


class GitSource:
    """One desired-state repository, mirrored under ``mirror_root``.

    ``url`` carries no credentials (the config moved them into ``credentials``); ``branch`` and
    ``credentials`` may be replaced between fetches (a config reload).
    """

    def __init__(self, url: str, branch: str, *, mirror_root: Path,
                 credentials: config_mod.GitCredentials | None = None) -> None:
        self.url = url
        self.branch = branch
        self.credentials = credentials or config_mod.GitCredentials()
        logs.register_secret(self.credentials.token)
        self.mirror_root = mirror_root
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        self.mirror_path = mirror_root / "mirrors" / key
        self._repo: pygit2.Repository | None = None
        self.fetches = 0
        self._trees: dict[tuple[str, str, limits_mod.SpecLimits], tuple[list[TreeFile], list[Refusal]]] = {}
        self._sizes: dict[str, int] = {}

    # ------------------------------------------------------------------ mirror

    def _mirror(self) -> pygit2.Repository:
        if self._repo is not None:
            return self._repo
        try:
            if not (self.mirror_path / "HEAD").exists():
                self._adopt_older_mirror()
            if (self.mirror_path / "HEAD").exists():
                repo = pygit2.Repository(str(self.mirror_path))
            else:
                self.mirror_path.parent.mkdir(parents=True, exist_ok=True)
                repo = pygit2.init_repository(str(self.mirror_path), bare=True)
                repo.remotes.create("origin", self.url)
            if repo.remotes["origin"].url != self.url:
                repo.remotes.set_url("origin", self.url)
        except (pygit2.GitError, OSError) as exc:
            raise errors.SourceError(f"cannot open the mirror of {self.url} in {self.mirror_path}: "
                                     f"{logs.redact(str(exc))}") from exc
        self._repo = repo
        return repo

    def _adopt_older_mirror(self) -> None:
        """A mirror made when ``repo.url`` still held a password was keyed by that URL: move it here.

        Its Git config is rewritten with the clean URL right after, so no copy of the password stays on disk.
        """
        root = self.mirror_path.parent
        if not root.is_dir():
            return
        for candidate in sorted(root.iterdir()):
            if candidate == self.mirror_path or not (candidate / "HEAD").exists():
                continue
            try:
                url = pygit2.Repository(str(candidate)).remotes["origin"].url or ""
            except (pygit2.GitError, KeyError, ValueError):
                continue
            clean, _user, password = config_mod.split_credentials(url)
            if password and clean == self.url:
                candidate.rename(self.mirror_path)
                log.info("moved the mirror of %s to %s (its config held a password)", self.url, self.mirror_path)
                return

    def fetch(self, last_good: str | None = None) -> FetchResult:
        """Fetch every branch and tag (pruning deleted ones); report the branch head and whether it was rewritten."""
        repo = self._mirror()
        if is_local_path(self.url) and not Path(self.url).exists():
            raise errors.SourceError(f"repository {self.url} does not exist (repo.url in the config)")
        callbacks = _Callbacks(self.credentials)
        try:
            with _known_hosts(self.credentials, self.mirror_root / "ssh-home"):
                repo.remotes["origin"].fetch(
                    ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
                    callbacks=callbacks, prune=pygit2.enums.FetchPrune.PRUNE,
                )
        except errors.SourceError as exc:
            raise errors.SourceError(f"cannot fetch {self.url}: {logs.redact(str(exc))}") from exc
        except (pygit2.GitError, OSError) as exc:
            raise errors.SourceError(f"cannot fetch {self.url}: {_git_message(exc)}") from exc
        self.fetches += 1
        ref = f"refs/remotes/origin/{self.branch}"
        try:
            head = str(repo.references[ref].resolve().target)
        except (KeyError, pygit2.GitError) as exc:
            branches = sorted(
                r[len("refs/remotes/origin/"):] for r in repo.references if r.startswith("refs/remotes/origin/")
            )
            raise errors.SourceError(
                f"branch {self.branch!r} not found in {self.url} "
                f"(branches: {', '.join(branches) or 'none'}; repo.branch in the config)"
            ) from exc
        forced = False
        if last_good and last_good != head:
            try:
                forced = not repo.descendant_of(pygit2.Oid(hex=head), pygit2.Oid(hex=last_good))
            except (pygit2.GitError, ValueError, KeyError):
                forced = True
        return FetchResult(head=head, previous=last_good, force_pushed=forced)

    def has_commit(self, commit: str) -> bool:
        try:
            return isinstance(self._mirror()[commit], pygit2.Commit)
        except (KeyError, ValueError):
            return False

    # ------------------------------------------------------------------ reading

    def resolve(self, ref: str) -> str:
        """A commit id for ``ref`` in the mirror, which has no checkout and no local branches.

        ``HEAD`` is the tracked branch; a bare name is a branch of the remote (``main`` means
        ``origin/main`` here, ``main~1`` too), then a tag; ``origin/NAME``, commit ids and rev
        expressions work as in git.
        """
        repo = self._mirror()
        if ref == "HEAD" or ref.startswith(("HEAD~", "HEAD^")):
            ref = f"origin/{self.branch}{ref[4:]}"
        for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}"):
            if candidate in repo.references:
                return str(repo.references[candidate].peel(pygit2.Commit).id)
        try:
            return resolve_in(repo, ref, where=self.url)
        except errors.SourceError:
            if ref.startswith("origin/"):
                raise
            try:
                return resolve_in(repo, f"origin/{ref}", where=self.url)
            except errors.SourceError:
                pass
            raise

    def tree_files(self, commit: str, spec_path: str, limits: limits_mod.SpecLimits | None = None
                   ) -> tuple[list[TreeFile], list[Refusal]]:
        """As the module function; remembered for the last few commits, so checking a head and then
        loading it walks its tree once."""
        key = (commit, spec_path, limits or limits_mod.SpecLimits())
        if key not in self._trees:
            if len(self._trees) >= 4:
                self._trees.pop(next(iter(self._trees)))
            if len(self._sizes) > 500_000:
                self._sizes.clear()
            self._trees[key] = tree_files(self._mirror(), commit, spec_path, key[2], sizes=self._sizes)
        return self._trees[key]

    def commit_info(self, commit: str) -> dict[str, Any]:
        return commit_info(self._mirror(), commit)

    def verify_signature(self, commit: str, allowed_signers: Path | None) -> Signature:
        return verify_signature(self._mirror(), commit, allowed_signers)


class LocalCheckout:
    """A working repository read in place (``plan --ref`` in CI, where refs are local)."""

    def __init__(self, path: str) -> None:
        try:
            found = pygit2.discover_repository(path)
        except pygit2.GitError as exc:
            raise errors.SourceError(f"{path} is not inside a Git repository: {exc}") from exc
        if found is None:
            raise errors.SourceError(f"{path} is not inside a Git repository")
        self.repo = pygit2.Repository(found)

    def resolve(self, ref: str) -> str:
        """``ref`` as git resolves it here: ``HEAD`` is the checked-out commit, ``main`` the local
        branch, ``origin/main`` the remote-tracking branch, then tags, commit ids, rev expressions."""
        return resolve_in(self.repo, ref, where=self.repo.workdir or self.repo.path)

    def tree_files(self, commit: str, spec_path: str, limits: limits_mod.SpecLimits | None = None
                   ) -> tuple[list[TreeFile], list[Refusal]]:
        return tree_files(self.repo, commit, spec_path, limits)

    def commit_info(self, commit: str) -> dict[str, Any]:
        return commit_info(self.repo, commit)


def _git_message(exc: Exception) -> str:
    """libgit2's message, without any credential it may quote, and with a hint for the common cases."""
    text = logs.redact(str(exc))
    if "unknown remote ssh hostkey" in text:
        text += " (add the server's key to repo.ssh_known_hosts, e.g. from `ssh-keyscan -p PORT HOST`)"
    return text


def resolve_in(repo: pygit2.Repository, ref: str, *, where: str) -> str:
    """git's own rules (``git rev-parse REF^{commit}``); an unknown ref is an error, never a guess."""
    try:
        obj = repo.revparse_single(ref)
        return str(obj.peel(pygit2.Commit).id)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise errors.SourceError(f"cannot resolve {ref!r} to a commit in {where}: {exc}") from exc


def tree_files(repo: pygit2.Repository, commit: str, spec_path: str, limits: limits_mod.SpecLimits | None = None,
               *, sizes: dict[str, int] | None = None) -> tuple[list[TreeFile], list[Refusal]]:
    """Every regular file under ``spec_path`` at ``commit``, plus refusals (symlinks).

    Raises ``TreeTooLarge`` when the tree holds more files or bytes than
    ``limits`` allow: such a commit is not used at all (no file of it is read,
    nothing is pruned because of it). ``sizes`` remembers blob sizes between
    commits, so only new blobs' headers are read.
    """
    limits = limits or limits_mod.SpecLimits()
    sizes = sizes if sizes is not None else {}
    try:
        root = repo[commit].peel(pygit2.Commit).tree
    except (KeyError, ValueError) as exc:
        raise errors.SourceError(f"commit {commit} is not in the repository") from exc
    spec_path = spec_path.strip("/")
    problems: list[Refusal] = []
    if spec_path:
        try:
            entry = root[spec_path]
        except KeyError:
            return [], [(spec_path, f"the spec path does not exist at commit {commit[:8]} (repo.path in the config)")]
        if entry.filemode != _TREE:
            return [], [(spec_path, "the spec path is not a directory")]
        tree = repo[entry.id]
    else:
        tree = root
    out: list[TreeFile] = []
    count, total = 0, 0
    stop = 10 * limits.max_files

    def reader(oid: pygit2.Oid) -> Callable[[], bytes]:
        def read() -> bytes:
            blob = repo[oid]
            assert isinstance(blob, pygit2.Blob)
            return blob.data

        return read

    def size_of(oid: pygit2.Oid) -> int:
        key = str(oid)
        if key not in sizes:
            sizes[key] = int(repo.odb.read_header(oid)[1])
        return sizes[key]

    if not isinstance(tree, pygit2.Tree):
        return [], [(spec_path, "the spec path is not a directory")]
    complete = True
    stack: list[tuple[pygit2.Tree, str]] = [(tree, spec_path)]  # no recursion: trees may nest very deep
    while stack and complete:
        t, prefix = stack.pop()
        for e in t:
            name = e.name or ""
            path = f"{prefix}/{name}" if prefix else name
            refused = limits_mod.name_problem(name)
            if refused:
                problems.append((path, refused))
            elif e.filemode == _TREE:
                sub = repo[e.id]
                assert isinstance(sub, pygit2.Tree)
                stack.append((sub, path))
            elif e.filemode == _SYMLINK:
                problems.append((path, "symbolic links are not followed in the spec tree"))
            elif e.filemode == _COMMIT:
                continue
            else:
                count += 1
                if count <= limits.max_files:  # past it only the count matters
                    out.append(TreeFile(path=path, blob_id=str(e.id), read=reader(e.id)))
                    total += size_of(e.id)
                elif count > stop:
                    complete = False
                    break
    over = limits_mod.tree_problem(spec_path, count, total, limits, complete=complete)
    if over:
        raise TreeTooLarge(f"{over} (commit {commit[:8]})")
    return out, problems


def commit_info(repo: pygit2.Repository, commit: str) -> dict[str, Any]:
    c = repo[commit].peel(pygit2.Commit)
    return {
        "id": str(c.id),
        "short": str(c.id)[:8],
        "summary": c.message.splitlines()[0] if c.message else "",
        "author": c.author.name,
        "time": c.commit_time,
    }


def verify_signature(repo: pygit2.Repository, commit: str, allowed_signers: Path | None) -> Signature:
    """Check the commit's signature with ``ssh-keygen -Y verify`` or ``gpg --verify`` (local tools)."""
    c = repo[commit].peel(pygit2.Commit)
    signature, payload = c.gpg_signature
    if not signature:
        return Signature(False, "", f"commit {str(c.id)[:8]} is not signed")
    with tempfile.TemporaryDirectory() as tmp:
        sig_file = Path(tmp) / "sig"
        sig_file.write_bytes(signature)
        data_file = Path(tmp) / "data"
        data_file.write_bytes(payload)
        if b"SSH SIGNATURE" in signature:
            if allowed_signers is None:
                return Signature(False, "", "SSH-signed commit but no allowed_signers file is configured")
            ident = c.committer.email
            try:
                with data_file.open("rb") as stdin:
                    res = subprocess.run(
                        ["ssh-keygen", "-Y", "verify", "-f", str(allowed_signers), "-I", ident,
                         "-n", "git", "-s", str(sig_file)],
                        stdin=stdin, capture_output=True, timeout=30, check=False,
                    )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return Signature(False, "", f"ssh-keygen could not verify: {exc}")
            ok = res.returncode == 0
            text = (res.stdout or res.stderr).decode(errors="replace").strip()
            return Signature(ok, ident if ok else "", text)
        try:
            res = subprocess.run(
                ["gpg", "--status-fd", "1", "--verify", str(sig_file), str(data_file)],
                capture_output=True, timeout=30, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Signature(False, "", f"gpg could not verify: {exc}")
        status = res.stdout.decode(errors="replace")
        m = re.search(r"\[GNUPG:\] VALIDSIG (\w+)", status)
        if res.returncode == 0 and m:
            return Signature(True, m.group(1), "good signature")
        return Signature(False, "", "bad or unknown GPG signature")
