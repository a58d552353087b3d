"""Rendering is bounded: CPU time and memory per file in worker processes, a wall-clock kill, cheap guards first."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from specs import limits, loader, renderpool
from tests.specs.spec_helpers import Tree, lines_of, minimal

MiB = 1024 * 1024
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def pool() -> Iterator[renderpool.RenderPool]:
    with renderpool.RenderPool(limits.SpecLimits(render_timeout_s=0.3, render_memory_bytes=64 * MiB)) as p:
        yield p


def load(tree: Tree, pool: renderpool.RenderPool, cache: loader.SpecCache | None = None):
    return loader.load_specs(tree.spec_files(), spec_path="apps", cache=cache, limits=pool.limits, pool=pool)


def test_a_spinning_template_is_stopped_at_its_line_and_the_others_load(pool: renderpool.RenderPool) -> None:
    tree = Tree({"spin.yaml": minimal("spin") + "# {{ values.x }}\n" + SPIN + "\n",
                 "good.yaml": minimal("good").replace("img-1", "'{{ values.x }}'"), "values.yaml": "x: img-9\n"})

    state = load(tree, pool)

    assert lines_of(state) == [
        "apps/spin.yaml:11: (file): template rendering took longer than 0.3s (specs.render_timeout); it was stopped"]
    assert state.applications["good"].clusters[0].launch.image == "img-9"


def test_memory_past_the_limit_is_the_files_problem_even_without_a_guard(pool: renderpool.RenderPool) -> None:
    doubling = ("{% set ns = namespace(l=range(100000)|list) %}{% for i in range(30) %}"
                "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}")
    tree = Tree({"hog.yaml": minimal("hog") + f"# {doubling}\n", "good.yaml": minimal("good") + "# {{ 1 }}\n"})

    state = load(tree, pool)

    assert lines_of(state) == ["apps/hog.yaml:10: (file): template rendering needs more than 64 MiB of memory "
                               "(specs.render_memory); it was stopped"]
    assert list(state.applications) == ["good"]


@pytest.mark.parametrize(("template", "refusal"), [
    ("{{ 'x'|center(2000000000) }}", "center(2000000000) would build 2,000,000,000 characters"),
    ("{{ '%2000000000d' % 1 }}", "the format width 2000000000 would build 2,000,000,000 characters"),
    ("{{ '%*d' % (2000000000, 1) }}", "the format width 2000000000 would build 2,000,000,000 characters"),
    ("{{ 'x'.ljust(2000000000) }}", "str.ljust(2000000000) would build 2,000,000,000 characters"),
    ("{{ 'x'.zfill(2000000000) }}", "str.zfill(2000000000) would build 2,000,000,000 characters"),
    ("{{ '{:2000000000}'.format(1) }}", "the format width 2000000000 would build 2,000,000,000 characters"),
    ("{{ '{:>{w}}'.format(1, w=2000000000) }}", "the format width 2000000000 would build 2,000,000,000 characters"),
    ("{{ '%s'|format('x') ~ '%2000000000s'|format('x') }}",
     "the format width 2000000000 would build 2,000,000,000 characters"),
    ("{{ 'ab'|indent(2000000000) }}", "indent(2000000000) would build 2,000,000,000 characters"),
    ("{{ lipsum(1000000) }}", "lipsum(1000000) would build 1,000,000,000 characters"),
    ("{{ [1]|batch(2000000000, 0)|list }}", "batch(2000000000) would build 2,000,000,000 characters"),
    ("{{ {'a': 1}|tojson(indent=2000000000) }}", "tojson(indent=2000000000): at most 64"),
    ("{{ ('x' * 1000000).replace('x', 'yyyyy') }}", "str.replace would build 6,000,000 characters"),
])
def test_obvious_memory_bombs_are_refused_before_they_are_built(pool: renderpool.RenderPool, template: str,
                                                                 refusal: str) -> None:
    state = load(Tree({"bomb.yaml": minimal("bomb") + f"# {template}\n"}), pool)

    assert lines_of(state) == [f"apps/bomb.yaml:10: (file): template refused by the sandbox: {refusal}"]


def test_ordinary_formatting_still_works(pool: renderpool.RenderPool) -> None:
    tagged = minimal("shop", "tags: {a: \"{{ '%03d' % 7 }}\", b: \"{{ '{:>4}'.format('x') }}\", "
                             "c: \"{{ 'ab'|center(6) }}\", d: \"{{ '%s-%s'|format('p', 'q') }}\"}")

    state = load(Tree({"shop.yaml": tagged}), pool)

    assert state.problems == ()
    assert dict(state.applications["shop"].clusters[0].launch.tags) == {"a": "007", "b": "   x", "c": "  ab  ",
                                                                       "d": "p-q"}


@pytest.mark.parametrize("mutation", ["{{ values.update({'image': 'evil'}) }}", "{{ values.tags.append(1) }}",
                                      "{% set x = [] %}{{ x.append(1) }}"])
def test_a_template_cannot_change_values_under_the_next_file(pool: renderpool.RenderPool, mutation: str) -> None:
    tree = Tree({"a.yaml": minimal("a") + f"# {mutation}\n",
                 "b.yaml": minimal("b").replace("img-1", "'{{ values.image }}'"),
                 "values.yaml": "image: img-2\ntags: [x]\n"})

    state = load(tree, pool)

    assert len(state.problems) == 1 and "is unsafe" in state.problems[0].message
    assert state.applications["b"].clusters[0].launch.image == "img-2"


def test_workers_start_once_and_serve_every_later_load(pool: renderpool.RenderPool) -> None:
    tree = Tree({f"app{i}.yaml": minimal(f"app{i}") + "# {{ values.n }}\n" for i in range(6)})
    for n in range(3):
        tree.put("values.yaml", f"n: {n}\n")
        state = load(tree, pool)
        assert state.problems == () and len(state.applications) == 6

    assert pool.starts == pool.size
    assert len(pool.pids()) == pool.size


def test_files_without_template_markers_never_reach_a_worker(pool: renderpool.RenderPool) -> None:
    state = load(Tree({f"app{i}.yaml": minimal(f"app{i}") for i in range(4)}), pool)

    assert len(state.applications) == 4
    assert pool.starts == 0 and pool.pids() == []


def test_a_worker_that_stops_answering_is_killed_at_the_wall_limit_and_replaced() -> None:
    with renderpool.RenderPool(limits.SpecLimits(render_timeout_s=0.1), workers=1) as pool:
        assert load(Tree({"warm.yaml": minimal("warm") + "# {{ 1 }}\n"}), pool).problems == ()
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)  # stuck as if inside one long C call: no alarm can run

        stuck = load(Tree({"stuck.yaml": minimal("stuck") + "# {{ 2 }}\n"}), pool)
        after = load(Tree({"next.yaml": minimal("next") + "# {{ 3 }}\n"}), pool)

        assert lines_of(stuck) == ["apps/stuck.yaml:1: (file): template rendering took longer than 0.1s "
                                   "(specs.render_timeout); it was stopped"]
        assert (pool.kills, pool.starts) == (1, 2)
        assert not Path(f"/proc/{pid}").exists()
        assert after.problems == () and list(after.applications) == ["next"]


def test_a_timed_out_file_is_cached_like_any_problem_and_a_fix_renders_again(pool: renderpool.RenderPool) -> None:
    tree = Tree({"spin.yaml": minimal("spin") + SPIN + "\n"})
    cache = loader.SpecCache()
    first = load(tree, pool, cache)
    again = load(tree, pool, cache)
    tree.put("spin.yaml", minimal("spin") + "# {{ 'fixed' }}\n")
    fixed = load(tree, pool, cache)

    assert first.problems == again.problems and cache.parses == 2
    assert fixed.problems == () and list(fixed.applications) == ["spin"]


def test_other_limits_render_afresh() -> None:
    tree = Tree({"a.yaml": minimal("a") + "# {{ 1 }}\n"})
    cache = loader.SpecCache()
    loader.load_specs(tree.spec_files(), cache=cache, limits=limits.SpecLimits(render_timeout_s=1))
    loader.load_specs(tree.spec_files(), cache=cache, limits=limits.SpecLimits(render_timeout_s=1))
    loader.load_specs(tree.spec_files(), cache=cache, limits=limits.SpecLimits(render_timeout_s=3))

    assert cache.parses == 2


def test_a_closed_pool_kills_its_workers_and_reports_without_caching() -> None:
    pool = renderpool.RenderPool(limits.SpecLimits())
    tree = Tree({"a.yaml": minimal("a") + "# {{ 1 }}\n"})
    assert load(tree, pool).problems == ()
    pids = pool.pids()
    cache = loader.SpecCache()

    pool.close()
    state = load(tree, pool, cache)

    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert lines_of(state) == ["apps/a.yaml:1: (file): the template renderer was shut down"]
    assert len(cache) == 0, "not the file's fault: not cached"


def test_a_large_request_to_a_worker_that_stopped_reading_goes_to_a_new_one() -> None:
    with renderpool.RenderPool(limits.SpecLimits(render_timeout_s=0.5), workers=1) as pool:
        assert load(Tree({"warm.yaml": minimal("warm") + "# {{ 1 }}\n"}), pool).problems == ()
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)
        big = minimal("big") + "# {{ 2 }}\n" + "#" * 400_000 + "\n"  # larger than a socket's buffer

        state = load(Tree({"big.yaml": big}), pool)

        assert state.problems == () and list(state.applications) == ["big"]
        assert pool.starts == 2 and not Path(f"/proc/{pid}").exists()


def test_workers_do_not_inherit_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_GIT_TOKEN", "s3cr3t-token")
    with renderpool.RenderPool(limits.SpecLimits(), workers=1) as pool:
        assert load(Tree({"a.yaml": minimal("a") + "# {{ 1 }}\n"}), pool).problems == ()
        (pid,) = pool.pids()
        environ = Path(f"/proc/{pid}/environ").read_bytes()

    assert b"s3cr3t-token" not in environ and b"RECONCILER_GIT_TOKEN" not in environ
