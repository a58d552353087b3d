"""Plan N clusters from a real Git repository; print wall times, parse counts and peak RSS.

    .venv/bin/python bench/plan_scale.py [--clusters 10000] [--per-file 5]

Three passes over the same GitSource, spec cache and rendering pool, as the
daemon does them: a first plan (everything parsed; every file has a template
marker, so every file is rendered by the pool's worker processes), a re-plan on
the same commit (nothing parsed), and a re-plan after one file changed (one
file parsed). Live state is the desired state already applied in one region and
missing in the other, so the planner produces real ``create`` changes and real
no-ops. The first plan includes starting the rendering workers.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies import base as policy_base
from policies import registry
from reconciler.core import model, planner
from reconciler.source import git as gitsource
from specs import limits, loader, renderpool

SPEC = """application: app{i}
owner: team{i}@example.com
criticality: normal
clusters:
{clusters}"""
CLUSTER = """  - stack: s{j}
    provider: local
    account: default
    regions: [us-east-1, eu-west-1]
    image: "{{{{ values.image }}}}-{i}"
    instance_type: m5.large
    capacity: {{min: 1, desired: 2, max: 4}}
"""


def build_repo(path: Path, files: int, per_file: int) -> tuple[pygit2.Repository, str]:
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    apps = repo.TreeBuilder()
    for i in range(files):
        text = SPEC.format(i=i, clusters="".join(CLUSTER.format(i=i, j=j) for j in range(per_file)))
        apps.insert(f"app{i}.yaml", repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB)
    apps.insert("values.yaml", repo.create_blob(b"image: img\n"), pygit2.enums.FileMode.BLOB)
    root = repo.TreeBuilder()
    root.insert("apps", apps.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("bench", "bench@example.com")
    commit = repo.create_commit("refs/heads/main", sig, sig, "bench", root.write(), [])
    return repo, str(commit)


def change_one_file(repo: pygit2.Repository, parent: str) -> str:
    head = repo[parent].peel(pygit2.Commit)
    apps = repo.TreeBuilder(head.tree["apps"].peel(pygit2.Tree))
    text = SPEC.format(i=0, clusters=CLUSTER.format(i="changed", j=0))
    apps.insert("app0.yaml", repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB)
    root = repo.TreeBuilder(head.tree)
    root.insert("apps", apps.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("bench", "bench@example.com")
    return str(repo.create_commit("refs/heads/main", sig, sig, "one file", root.write(), [head.id]))


def live_for(desired: model.DesiredState) -> planner.LiveState:
    groups = []
    for spec in desired.clusters():
        region = spec.regions[0]
        groups.append(model.ServerGroup(
            name=model.server_group_name(spec.name, 0), provider="local", account="default", region=region,
            cluster=spec.name, application=spec.application, managed=True, launch=spec.launch,
            capacity=spec.capacity, enabled=True, healthy=2, instances=2, spec_hash=spec.launch.spec_hash(),
        ))
    return planner.LiveState(tuple(groups))


def one_pass(src: gitsource.GitSource, commit: str, cache: loader.SpecCache, pool: renderpool.RenderPool,
             live: planner.LiveState | None) -> tuple[float, int, model.Plan, model.DesiredState]:
    before = cache.parses
    t0 = time.perf_counter()
    files, _ = src.tree_files(commit, "apps", pool.limits)
    desired = loader.load_specs(
        [loader.SpecFile(f.path, f.blob_id, f.read) for f in files], spec_path="apps", commit=commit, cache=cache,
        limits=pool.limits, pool=pool,
    )
    live = live if live is not None else live_for(desired)
    out = planner.plan(desired, live)
    ctx = policy_base.PolicyContext(now=time.time(), live=live.groups, desired=desired)
    judged = policy_base.judge(out.plan, ctx, registry.default_policies())
    return time.perf_counter() - t0, cache.parses - before, judged, desired


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--per-file", type=int, default=5)
    args = ap.parse_args()
    files = max(1, args.clusters // args.per_file)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repo, commit = build_repo(Path(tmp) / "origin.git", files, args.per_file)
        print(f"repo: {files} files, {files * args.per_file} clusters, built in {time.perf_counter() - t0:.2f}s")
        src = gitsource.GitSource(str(Path(tmp) / "origin.git"), "main", mirror_root=Path(tmp) / "state")
        t0 = time.perf_counter()
        src.fetch()
        print(f"mirror fetch: {time.perf_counter() - t0:.2f}s")
        cache = loader.SpecCache()
        pool = renderpool.RenderPool(limits.SpecLimits())
        cpu0 = time.process_time()
        first, parses1, plan1, desired = one_pass(src, commit, cache, pool, None)
        cpu_first = time.process_time() - cpu0
        worker_cpu = sum(_cpu_s(pid) for pid in pool.pids())
        live = live_for(desired)
        again, parses2, plan2, _ = one_pass(src, commit, cache, pool, live)
        commit2 = change_one_file(repo, commit)
        src.fetch()
        changed, parses3, _plan3, _ = one_pass(src, commit2, cache, pool, live)
        workers, starts = pool.pids(), pool.starts
        worker_rss = max((_peak_rss_kib(pid) for pid in workers), default=0) / 1024
        pool.close()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'pass':<28}{'wall s':>8}{'parses':>8}{'changes':>9}")
        print(f"{'first plan':<28}{first:>8.2f}{parses1:>8}{len(plan1.changes):>9}")
        print(f"{'re-plan, same commit':<28}{again:>8.2f}{parses2:>8}{len(plan2.changes):>9}")
        print(f"{'re-plan, one file changed':<28}{changed:>8.2f}{parses3:>8}{len(_plan3.changes):>9}")
        print(f"ratio first/re-plan: {first / max(again, 1e-9):.1f}x; peak RSS {rss_mb:.0f} MiB")
        print(f"first plan CPU: {cpu_first:.2f}s in this process, {worker_cpu:.2f}s in {len(workers)} rendering "
              f"worker(s) (started {starts} time(s) in all, peak RSS {worker_rss:.0f} MiB each at most)")
        assert parses2 == 0 and parses3 == 1, "the spec cache must skip unchanged blobs"
        assert starts == len(workers), "the rendering workers must serve every pass"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
