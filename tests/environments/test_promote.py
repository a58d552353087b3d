"""`reconciler promote` against real bare repositories: a path and `git daemon` on 127.0.0.1, signed or not."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.runtime import engine as engine_mod
from reconciler.source import git as gitsource
from reconciler.source import push
from tests.conftest import DesiredRepo, run_cli, write_config
from tests.environments.test_promotion_flow import pipeline_spec


def bare_remote(tmp_path: Path, version: str = "1.0") -> Path:
    work = DesiredRepo(tmp_path / "work")
    work.write("apps/values.yaml", f'# the versions CI promotes\ncheckout:\n  version: "{version}"  # bumped by CI\n')
    work.write("apps/checkout.yaml", pipeline_spec(soak="0s", approval=""))
    work.commit("first")
    bare = tmp_path / "desired.git"
    pygit2.clone_repository(str(work.path), str(bare), bare=True)
    return bare


def blob(bare: Path, path: str, ref: str = "refs/heads/main") -> str:
    repo = pygit2.Repository(str(bare))
    found = repo[repo.references[ref].peel(pygit2.Commit).tree[path].id]
    assert isinstance(found, pygit2.Blob), f"{path} at {ref} is not a file"
    return bytes(found.data).decode()


def config_for(tmp_path: Path, url: str) -> Path:
    return write_config(tmp_path / "config.yaml", tmp_path, tmp_path / "state", repo={"url": url})


def test_promote_writes_the_values_key_keeps_comments_and_the_daemon_deploys_it(tmp_path: Path) -> None:
    bare = bare_remote(tmp_path)
    cfg = config_for(tmp_path, str(bare))

    res = run_cli("promote", "checkout", "1.1", "--config", str(cfg))

    assert res.code == 0, res.err
    assert "1.0 -> 1.1 in apps/values.yaml (checkout.version); unsigned commit" in res.out
    assert blob(bare, "apps/values.yaml") == (
        '# the versions CI promotes\ncheckout:\n  version: "1.1"  # bumped by CI\n')
    repo = pygit2.Repository(str(bare))
    head = repo.references["refs/heads/main"].peel(pygit2.Commit)
    assert head.message == "Promote checkout to 1.1"
    assert len(head.parents) == 1

    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock_mod.FakeClock())
    try:
        engine.reconcile()
        test = {g.launch.image for g in engine.live.read(None).groups if g.cluster == "checkout-test"}
    finally:
        engine.close()
    assert test == {"checkout-1.1"}

    again = run_cli("promote", "checkout", "1.1", "--config", str(cfg))
    assert again.code == 0 and "already at 1.1" in again.out
    assert str(pygit2.Repository(str(bare)).references["refs/heads/main"].target) == str(head.id)


def test_promote_refuses_bad_input_naming_the_argument(tmp_path: Path) -> None:
    bare = bare_remote(tmp_path)
    cfg = str(config_for(tmp_path, str(bare)))
    before = str(pygit2.Repository(str(bare)).references["refs/heads/main"].target)

    cases = {
        ("chekout", "1.1"): "APP: no application named 'chekout' at",
        ("checkout", "1.1 beta"): "VERSION '1.1 beta' is not a version",
        ("checkout", "1.1", "--env", "prdo"): "--env: checkout has no environment named 'prdo' (environments: test, "
                                              "staging, prod; apps/checkout.yaml)",
        ("checkout", "1.1", "--env", "prod"): "--env prod: that environment takes the application's version",
        ("checkout", "1.1", "--author", "nobody"): "--author 'nobody': expected 'Name <email>'",
    }
    for args, message in cases.items():
        res = run_cli("promote", *args, "--config", cfg)
        assert res.code == 1, args
        assert message in res.err, (args, res.err)
    assert "did you mean checkout?" in run_cli("promote", "chekout", "1.1", "--config", cfg).err
    assert str(pygit2.Repository(str(bare)).references["refs/heads/main"].target) == before


def test_a_rejected_push_is_fetched_and_retried_on_top(tmp_path: Path) -> None:
    bare = bare_remote(tmp_path)
    calls: list[str] = []

    def edit(head: str, files: list[gitsource.TreeFile]) -> dict[str, bytes]:
        calls.append(head)
        if len(calls) == 1:  # someone pushes between our fetch and our push
            other = pygit2.clone_repository(str(bare), str(tmp_path / "other"))
            (tmp_path / "other" / "apps" / "README.md").write_text("someone else's change\n")
            other.index.add_all()
            other.index.write()
            sig = pygit2.Signature("Someone", "someone@example.com")
            other.create_commit("refs/heads/main", sig, sig, "someone else", other.index.write_tree(),
                                [other.head.target])
            other.remotes["origin"].push(["refs/heads/main:refs/heads/main"])
        text = next(f for f in files if f.path == "apps/values.yaml").read()
        return {"apps/values.yaml": text.replace(b"1.0", b"1.2")}

    pushed = push.commit_and_push(str(bare), "main", edit, spec_path="apps", message="Promote checkout to 1.2",
                                  author=("CI", "ci@example.com"))

    assert pushed.attempts == 2
    assert calls[0] != calls[1]
    assert '"1.2"' in blob(bare, "apps/values.yaml")
    assert blob(bare, "apps/README.md") == "someone else's change\n"  # theirs is kept: ours went on top


def test_promote_to_a_new_branch_for_a_pull_request(tmp_path: Path) -> None:
    bare = bare_remote(tmp_path)
    cfg = str(config_for(tmp_path, str(bare)))
    before = str(pygit2.Repository(str(bare)).references["refs/heads/main"].target)

    res = run_cli("promote", "checkout", "2.0", "--branch", "promote/checkout-2.0", "--config", cfg,
                  "--message", "Checkout 2.0 from build 77")

    assert res.code == 0, res.err
    assert "open a pull request from promote/checkout-2.0 into main" in res.out
    assert '"2.0"' in blob(bare, "apps/values.yaml", "refs/heads/promote/checkout-2.0")
    assert str(pygit2.Repository(str(bare)).references["refs/heads/main"].target) == before
    branch = pygit2.Repository(str(bare)).references["refs/heads/promote/checkout-2.0"].peel(pygit2.Commit)
    assert branch.message == "Checkout 2.0 from build 77"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if shutil.which("git") is None:
        pytest.fail("git is missing: run scripts/system-deps (Debian package git)")
    bare = bare_remote(tmp_path)
    port = _port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", f"--base-path={tmp_path}", "--export-all",
                             "--enable=receive-pack", "--listen=127.0.0.1", f"--port={port}", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"git://127.0.0.1:{port}/desired.git", bare
    proc.terminate()
    proc.wait(timeout=10)


def test_promote_signed_over_git_daemon_and_the_signature_verifies(tmp_path: Path,
                                                                   git_daemon: tuple[str, Path]) -> None:
    url, bare = git_daemon
    key = tmp_path / "ci_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@example.com", "-f", str(key)],
                   check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'ci@example.com namespaces="git" {key.with_suffix(".pub").read_text()}')
    cfg = config_for(tmp_path, url)

    res = run_cli("promote", "checkout", "1.3", "--config", str(cfg), "--signing-key", str(key),
                  "--author", "CI <ci@example.com>")

    assert res.code == 0, res.err
    assert "signed commit" in res.out
    repo = pygit2.Repository(str(bare))
    head = str(repo.references["refs/heads/main"].target)
    sig = gitsource.verify_signature(repo, head, signers)
    assert sig.verified, sig.reason
    assert '"1.3"' in blob(bare, "apps/values.yaml")
