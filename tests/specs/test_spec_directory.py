"""load_directory, behind ``reconciler validate PATH``: a repo root or the spec directory, on a real file system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from specs import loader
from tests.specs.spec_helpers import lines_of, minimal


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "desired"
    write(root / "apps" / "shop.yaml", minimal("shop").replace("img-1", "'{{ values.image }}'"))
    write(root / "apps" / "team" / "web.yml", minimal("web"))
    write(root / "apps" / "values.yaml", "image: img-7\n")
    write(root / "apps" / "policies.yaml", "defaults: {blast_radius: {max_clusters: 10}}\n")  # not a spec
    write(root / "apps" / "notes.txt", "not yaml\n")
    write(root / "README.md", "# desired state\n")
    return root


def test_a_repo_root_loads_its_spec_path(repo: Path) -> None:
    state = loader.load_directory(repo)

    assert state.problems == ()
    assert sorted(state.applications) == ["shop", "web"]
    assert state.applications["shop"].clusters[0].launch.image == "img-7"
    assert state.applications["web"].source.file == "apps/team/web.yml"


def test_the_spec_directory_itself_names_files_as_the_repo_does(repo: Path) -> None:
    write(repo / "apps" / "bad.yaml", minimal("bad", "bogus: 1"))

    from_root = loader.load_directory(repo)
    from_specs = loader.load_directory(repo / "apps")

    assert lines_of(from_specs) == lines_of(from_root)
    assert lines_of(from_root)[0].startswith("apps/bad.yaml:10: clusters[0].bogus: unknown field")
    assert sorted(from_specs.applications) == ["shop", "web"]


def test_another_spec_path_is_honoured(tmp_path: Path) -> None:
    write(tmp_path / "deploy" / "specs" / "shop.yaml", minimal("shop"))
    write(tmp_path / "apps" / "ignored.yaml", "not: loaded\n")

    state = loader.load_directory(tmp_path, spec_path="deploy/specs")

    assert state.problems == ()
    assert state.applications["shop"].source.file == "deploy/specs/shop.yaml"


def test_a_missing_directory_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    state = loader.load_directory(tmp_path / "nowhere")

    assert lines_of(state) == [f"{tmp_path / 'nowhere'}:1: (file): no such directory"]
    assert state.applications == {}


def test_a_link_that_leaves_the_tree_is_refused_and_not_read(repo: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "outside" / "secret.yaml", minimal("secret"))
    os.symlink(secret, repo / "apps" / "secret.yaml")
    os.symlink(secret.parent, repo / "apps" / "linkdir")

    state = loader.load_directory(repo)

    assert lines_of(state) == [
        f"apps/linkdir:1: (file): symbolic link to a path outside {repo}; links are not followed in the spec tree",
        f"apps/secret.yaml:1: (file): symbolic link to a path outside {repo}; links are not followed in the spec "
        "tree",
    ]
    assert sorted(state.applications) == ["shop", "web"]
    assert "secret" not in state.applications


def test_a_link_inside_the_tree_is_refused_like_the_git_source_refuses_it(repo: Path) -> None:
    os.symlink(repo / "apps" / "team" / "web.yml", repo / "apps" / "web-again.yaml")

    state = loader.load_directory(repo)

    assert lines_of(state) == [
        f"apps/web-again.yaml:1: (file): symbolic link to a path inside {repo}; links are not followed in the spec "
        "tree"]
    assert sorted(state.applications) == ["shop", "web"]


def test_an_oversize_file_is_refused_unread(repo: Path) -> None:
    write(repo / "apps" / "huge.yaml", b"#" * (loader.MAX_FILE_BYTES + 1))

    state = loader.load_directory(repo)

    assert lines_of(state) == ["apps/huge.yaml:1: (file): file is larger than 1024 KiB; not parsed (split it up)"]


def test_a_shared_cache_makes_a_second_validate_free(repo: Path) -> None:
    cache = loader.SpecCache()

    loader.load_directory(repo, cache=cache)
    loader.load_directory(repo, cache=cache)
    write(repo / "apps" / "team" / "web.yml", minimal("web").replace("img-1", "img-2"))
    loader.load_directory(repo, cache=cache)

    assert cache.parses == 3
