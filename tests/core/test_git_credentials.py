"""Git credentials come from files or the URL, reach libgit2 only through the callback, and never the mirror."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pygit2

from tests.conftest import DesiredRepo, app_spec, run_cli, write_config
from tests.gitservers import GitHttpServer, SshServer

ONE = ("us-east-1",)


def _repo(tmp_path: Path) -> DesiredRepo:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/checkout.yaml", app_spec(regions=ONE)).commit("v1")
    return repo


def _mirror_configs(state: Path) -> str:
    return "".join(p.read_text() for p in (state / "mirrors").glob("*/config"))


def test_a_token_file_is_read_at_every_fetch_so_rotating_it_needs_no_restart(tmp_path: Path,
                                                                             git_http: GitHttpServer) -> None:
    repo = _repo(tmp_path)
    token = tmp_path / "git-token"
    token.write_text(git_http.password + "\n")
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state",
                       repo={"url": git_http.url("desired"), "token_file": "git-token"})
    assert run_cli("plan", "--config", str(cfg), config_first=True).code == 2
    git_http.password = "rotated-" + git_http.password
    token.write_text(git_http.password + "\n")
    repo.write("apps/cart.yaml", app_spec("cart", regions=ONE)).commit("cart")
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 2 and "cart-main" in res.out
    token.write_text("wrong-token-value\n")
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 1
    assert f"cannot fetch {git_http.url('desired')}: the server refused the credentials for user deploy " \
           f"(repo.token_file {token})" in res.err
    assert "wrong-token-value" not in res.err + res.out
    assert git_http.password not in _mirror_configs(tmp_path / "state")


def test_a_password_in_the_url_is_used_but_never_written_to_the_mirror(tmp_path: Path,
                                                                        git_http: GitHttpServer) -> None:
    _repo(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", tmp_path, tmp_path / "state",
                       repo={"url": git_http.url("desired", password=git_http.password)})
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 2, res.err
    configs = _mirror_configs(tmp_path / "state")
    assert f"url = {git_http.url('desired')}\n" in configs and git_http.password not in configs
    fetch_head = "".join(p.read_text() for p in (tmp_path / "state" / "mirrors").glob("*/FETCH_HEAD"))
    assert git_http.password not in fetch_head


def test_an_older_mirror_keyed_by_a_url_with_a_password_is_moved_and_cleaned(tmp_path: Path,
                                                                             git_http: GitHttpServer) -> None:
    _repo(tmp_path)
    with_password = git_http.url("desired", password=git_http.password)
    old = tmp_path / "state" / "mirrors" / hashlib.sha256(with_password.encode()).hexdigest()[:16]
    old.parent.mkdir(parents=True)
    mirror = pygit2.init_repository(str(old), bare=True)
    mirror.remotes.create("origin", with_password)  # what earlier versions wrote
    cfg = write_config(tmp_path / "config.yaml", tmp_path, tmp_path / "state", repo={"url": with_password})
    assert run_cli("plan", "--config", str(cfg), config_first=True).code == 2
    assert not old.exists()
    [config] = list((tmp_path / "state" / "mirrors").glob("*/config"))
    assert config.parent.name == hashlib.sha256(git_http.url("desired").encode()).hexdigest()[:16]
    assert git_http.password not in config.read_text()


def test_an_ssh_key_file_and_known_hosts_file_are_the_only_ones_used(tmp_path: Path, git_ssh: SshServer) -> None:
    repo = _repo(tmp_path)
    url = f"ssh://{git_ssh.user}@127.0.0.1:{git_ssh.port}{repo.path}"
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state",
                       repo={"url": url, "ssh_key_file": str(git_ssh.client_key),
                             "ssh_known_hosts": str(git_ssh.known_hosts)})
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 2 and "checkout-main" in res.out, res.err
    write_config(cfg, repo.path, tmp_path / "state",
                 repo={"url": url, "ssh_key_file": str(git_ssh.client_key),
                       "ssh_known_hosts": str(git_ssh.wrong_known_hosts)})
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 1 and "unknown remote ssh hostkey" in res.err and "repo.ssh_known_hosts" in res.err
    write_config(cfg, repo.path, tmp_path / "state",
                 repo={"url": url, "ssh_key_file": str(tmp_path / "missing_key"),
                       "ssh_known_hosts": str(git_ssh.known_hosts)})
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 1 and f"cannot read the SSH key file {tmp_path / 'missing_key'}" in res.err


def test_a_branch_deleted_upstream_is_a_source_error_not_a_stale_head(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state")
    assert run_cli("apply", "--yes", "--config", str(cfg), config_first=True).code == 0
    repo.repo.branches.local.create("other", repo.repo[repo.head()].peel(pygit2.Commit))
    repo.repo.set_head("refs/heads/other")
    repo.repo.branches.local.delete("main")
    res = run_cli("plan", "--config", str(cfg), config_first=True)
    assert res.code == 1 and "branch 'main' not found" in res.err and "branches: other" in res.err
    res = run_cli("status", "--config", str(cfg), config_first=True)
    assert res.code == 0 and "source: branch 'main' not found" in res.out
