"""Signed commits, verified locally: an SSH-signed commit by an allowed key applies; others are denied."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Env, app_spec, write_config


def _signed_commit(env: Env, key: Path, message: str) -> str:
    repo = env.repo.repo
    index = repo.index
    index.add_all()
    index.write()
    tree = index.write_tree()
    parent = repo.references["refs/heads/main"].target
    # pygit2's stub says Oid; it returns the commit's text, which is what gets signed
    data: str = repo.create_commit_string(env.repo.sig, env.repo.sig, message, tree, [parent])  # type: ignore[assignment]
    sig = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", "git"], input=data.encode(),
                         capture_output=True, check=True).stdout.decode()
    oid = repo.create_commit_with_signature(data, sig, "gpgsig")
    repo.references["refs/heads/main"].set_target(oid)
    return str(oid)


def test_only_commits_signed_by_an_allowed_key_are_applied(env: Env, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen is missing: run scripts/system-deps (Debian package openssh-client)")
    key = tmp_path / "ops_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@example.com", "-f", str(key)],
                   check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'ops@example.com namespaces="git" {key.with_suffix(".pub").read_text()}')
    write_config(env.config, env.repo.path, env.state_dir,
                 repo={"url": str(env.repo.path), "branch": "main", "path": "apps", "allowed_signers": str(signers)})
    env.repo.write("apps/policies.yaml", "defaults: {signed_commits: {required: true}}\n")
    env.repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("unsigned")

    res = env.cli("apply", "--yes")
    assert res.code == 1 and "signed-commits" in res.out and "is not signed" in res.out
    assert env.groups() == []

    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-1.1", regions=("us-east-1",)))
    _signed_commit(env, key, "signed")
    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert [g["image"] for g in env.groups() if g["enabled"]] == ["checkout-1.1"]

    other = tmp_path / "intruder"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@example.com", "-f", str(other)],
                   check=True)
    env.repo.write("apps/checkout.yaml", app_spec(image="checkout-6.6.6", regions=("us-east-1",)))
    _signed_commit(env, other, "signed by someone else")
    res = env.cli("apply", "--yes")
    assert res.code == 1 and "not signed by an allowed key" in res.out
    assert [g["image"] for g in env.groups() if g["enabled"]] == ["checkout-1.1"]
