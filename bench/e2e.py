"""End to end at fleet scale: the real CLI and a real daemon on a generated repository, next to the floor.

    .venv/bin/python bench/e2e.py [--clusters 10000] [--per-file 5] [--passes 4] [--skip-daemon]
                                  [--growth 50000]

The repository has N/5 spec files of 5 clusters in two regions, each with
a load balancer and a security group declared for its clusters,
tags and a user_data script, and a ``{{ values.image }}``
marker (so every file is a template). Nothing is applied yet (local provider).

The floor, measured in the same run and the same process as the figures are
printed from: read every blob with pygit2, render it with Jinja's sandbox and
parse it with libyaml. Every figure is printed with its ratio to the floor, so
that a busy machine moves figures and floor together.

Measured:

* ``reconciler validate`` on a checkout of the tree;
* ``reconciler plan --format json --out FILE``, first run on a fresh state
  store, again on the same inputs (answered from ``STATE_DIR/plan-cache``),
  and a third time with ``--no-cache`` (evaluated and written afresh with
  nothing parsed) (wall time, peak RSS, files parsed);
* a real ``reconciler run`` daemon with the fleet frozen (so every pass plans
  and judges every change and runs none): its unchanged passes, then the pass
  after a commit that changes one file (wall time of each pass from the
  daemon's ``reconciler_pass_duration_seconds`` metric, peak RSS);
* with ``--growth N``: the three plans again on a repository of N clusters, and
  how time and peak RSS grew (linear growth is the ratio of the sizes); a
  tree over the 32 MiB default of ``specs.max_total_size`` gets a larger limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jinja2.sandbox
import pygit2
import yaml

ROOT = Path(__file__).resolve().parent.parent

SPEC = """application: app{i}
owner: team{t}@example.com
criticality: normal
load_balancers:
  - name: app{i}-web
    health_check: {{path: /healthz, port: 8080}}
security_groups:
  - name: sg-app{i}
    description: app{i} web servers
    ingress:
      - {{protocol: tcp, ports: 8080, cidr: 10.0.0.0/8}}
clusters:
{clusters}"""
CLUSTER = """  - stack: s{j}
    detail: d{i}
    provider: local
    account: default
    regions: [us-east-1, eu-west-1]
    image: "{{{{ values.image }}}}-{i}-{j}"
    instance_type: m5.large
    capacity: {{min: 1, desired: 2, max: 4}}
    load_balancers: [app{i}-web]
    security_groups: [sg-app{i}]
    tags:
      team: team{t}
      cost-center: cc-{cc}
      service: app{i}-s{j}
      environment: production
      tier: web
      owner-email: team{t}@example.com
    health: {{healthy_percent: 100, timeout: 10m}}
    strategy: {{keep_disabled: 1, scale_down: true}}
    user_data: |
      #!/bin/sh
      # app{i} stack s{j}: bootstrap
      echo "starting app{i}-s{j}" > /var/log/bootstrap.log
      export SERVICE=app{i}-s{j} TEAM=team{t} REGION_PRIMARY=us-east-1
      /opt/agent/install --cluster app{i}-s{j} --team team{t} --cost-center cc-{cc}
      /opt/app/bin/start --port 8080 --health /healthz --workers 4
"""


def spec_text(i: int, per_file: int, marker: str = "") -> str:
    t, cc = i % 97, i % 13
    body = "".join(CLUSTER.format(i=i, j=j, t=t, cc=cc) for j in range(per_file))
    return SPEC.format(i=i, t=t, clusters=body) + marker


def build_repo(path: Path, files: int, per_file: int) -> tuple[pygit2.Repository, str, int]:
    """A non-bare repository (``validate`` reads its work tree); returns (repo, commit, YAML bytes)."""
    repo = pygit2.init_repository(str(path), initial_head="main")
    apps = path / "apps"
    apps.mkdir()
    size = 0
    for i in range(files):
        text = spec_text(i, per_file)
        size += len(text)
        (apps / f"app{i}.yaml").write_text(text, encoding="utf-8")
    (apps / "values.yaml").write_text("image: img\n", encoding="utf-8")
    repo.index.add_all()
    repo.index.write()
    sig = pygit2.Signature("bench", "bench@example.com")
    commit = repo.create_commit("refs/heads/main", sig, sig, "bench", repo.index.write_tree(), [])
    return repo, str(commit), size


def change_one_file(repo: pygit2.Repository, path: Path, per_file: int) -> str:
    """A commit that changes app0.yaml (a new image for its clusters)."""
    (path / "apps" / "app0.yaml").write_text(spec_text(0, per_file, "\n# changed\n").replace(
        "{{ values.image }}-0-", "{{ values.image }}-changed-"), encoding="utf-8")
    repo.index.add_all()
    repo.index.write()
    sig = pygit2.Signature("bench", "bench@example.com")
    parent = repo.head.target
    return str(repo.create_commit("refs/heads/main", sig, sig, "one file", repo.index.write_tree(), [parent]))


def floor(repo_path: Path, commit: str) -> float:
    """Read every blob with pygit2 + render with Jinja's sandbox + parse with libyaml: the least any loader does."""
    t0 = time.perf_counter()
    repo = pygit2.Repository(str(repo_path))
    tree = repo[commit].peel(pygit2.Commit).tree["apps"].peel(pygit2.Tree)
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    values = yaml.load(repo[tree["values.yaml"].id].peel(pygit2.Blob).data, Loader=yaml.CSafeLoader)
    for entry in tree:
        if entry.name == "values.yaml":
            continue
        text = repo[entry.id].peel(pygit2.Blob).data.decode("utf-8")
        rendered = env.from_string(text).render(values=values)
        yaml.load(rendered, Loader=yaml.CSafeLoader)
    return time.perf_counter() - t0


@dataclass
class Run:
    wall: float
    rss_mb: float
    code: int
    out: str
    err: str


# Runs argv[2:] and writes its peak RSS (KiB) to the file descriptor argv[1]. A process's ru_maxrss
# includes the peak of the memory it had before its exec, which for a child of this bench is the bench's
# own (after the first plan it holds that plan's output: ~270 MB, reported as the second plan's peak); a
# child of this small launcher starts from the launcher's ~10 MB instead.
_LAUNCH = """import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
os.write(int(sys.argv[1]), str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def cli(*args: str, cwd: Path) -> Run:
    """One real ``reconciler`` process; its peak RSS from wait4 in a small launcher (see ``_LAUNCH``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rss_r, rss_w = os.pipe()
        t0 = time.perf_counter()
        launcher = [sys.executable, "-c", _LAUNCH, str(rss_w), sys.executable, "-m", "reconciler.cli", *args]
        proc = subprocess.Popen(launcher, cwd=cwd, stdout=out, stderr=err, pass_fds=(rss_w,))
        os.close(rss_w)
        code = proc.wait()
        wall = time.perf_counter() - t0
        with os.fdopen(rss_r, "rb") as f:
            rss_kib = int(f.read() or b"0")
        out.seek(0)
        err.seek(0)
        return Run(wall, rss_kib / 1024, code, out.read(), err.read())


def parsed(err: str) -> str:
    """The files parsed, as ``plan -v`` logs them (``?`` when the build does not say)."""
    m = re.search(r"specs: (\d+) file\(s\) parsed", err)
    return m.group(1) if m else "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pass_metrics(port: int) -> tuple[int, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    count = re.search(r"^reconciler_pass_duration_seconds_count (\S+)$", text, re.M)
    total = re.search(r"^reconciler_pass_duration_seconds_sum (\S+)$", text, re.M)
    return (int(float(count.group(1))) if count else 0), (float(total.group(1)) if total else 0.0)


def next_pass(port: int, proc: subprocess.Popen[bytes], seen: tuple[int, float], timeout: float
              ) -> tuple[int, float]:
    """Wait for the daemon's next finished pass; returns the new (count, sum)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode})")
        try:
            now = pass_metrics(port)
        except OSError:
            now = seen
        if now[0] > seen[0]:
            return now
        time.sleep(0.02)
    raise SystemExit("no pass finished in time")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def daemon(cfg: Path, tmp: Path, repo: pygit2.Repository, repo_path: Path, per_file: int, port: int,
           passes: int) -> tuple[list[float], float, float, str]:
    """(unchanged pass times, one-file pass time, peak RSS MB, commit of that pass) of a real daemon."""
    log = (tmp / "daemon.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--config", str(cfg),
                             "--log-format", "text"], cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        seen = next_pass(port, proc, (0, 0.0), 900)  # the first pass: loads and parses everything
        unchanged: list[float] = []
        for _ in range(passes):
            now = next_pass(port, proc, seen, 300)
            if now[0] == seen[0] + 1:
                unchanged.append(now[1] - seen[1])
            seen = now
        commit = change_one_file(repo, repo_path, per_file)
        # the poll interval leaves seconds between passes: the next pass to start fetches this commit
        now = next_pass(port, proc, seen, 300)
        one = now[1] - seen[1]
        rss = peak_rss_mb(proc.pid)
        log.flush()
        text = (tmp / "daemon.log").read_text()
        if f"at {commit[:8]}" not in text:
            raise SystemExit("the daemon did not report the changed commit; its log:\n" + text[-3000:])
        return unchanged, one, rss, commit
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def write_config(tmp: Path, repo_path: Path, port: int, poll: str, size: int = 0) -> Path:
    """The daemon's and the CLI's config; ``size`` (bytes of YAML) raises the spec tree limit when needed."""
    state = tmp / "state"
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "repo": {"url": str(repo_path), "branch": "main", "path": "apps"},
        "poll": {"interval": poll, "jitter": "0s"},
        "state_dir": str(state), "state": f"sqlite:///{state / 'state.db'}", "prune": False,
        "http": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "info"},
        "providers": {"local": {"accounts": {"default": {"boot_seconds": 0}}}},
        **({"specs": {"max_total_size": f"{size // 2**20 * 2 + 1}MiB"}} if size > 30 * 2**20 else {}),
    }, sort_keys=False), encoding="utf-8")
    return cfg


def plans(tmp: Path, cfg: Path) -> tuple[Run, Run, Run]:
    """``plan --format json --out`` three times on the same commit: (first, second, third with --no-cache).

    The second finds the first's answer (``STATE_DIR/plan-cache``); the third evaluates and writes afresh
    with nothing parsed, what a plan costs when an input changed but no spec file did."""
    plan_args = ("plan", "--config", str(cfg), "--format", "json", "--out", str(tmp / "plan.json"), "-v")
    first = cli(*plan_args, cwd=tmp)
    assert first.code == 2, first.err[-3000:]
    doc = json.loads(first.out)
    if doc["problems"] or not doc["changes"]:
        raise SystemExit(f"the generated specs have problems: {doc['problems'][:3]}")
    saved = (tmp / "plan.json").read_bytes()
    runs = [first]
    for extra in ((), ("--no-cache",)):
        again = cli(*plan_args, *extra, cwd=tmp)
        assert again.code == 2, again.err[-3000:]
        if again.out != first.out or (tmp / "plan.json").read_bytes() != saved:
            raise SystemExit(f"plan {' '.join(extra)} printed or saved something else than the first")
        reused = "nothing re-planned" in again.err
        if reused == bool(extra):
            raise SystemExit("the second plan was not answered from the first" if not extra
                             else "plan --no-cache reused an answer")
        runs.append(again)
    return runs[0], runs[1], runs[2]


def growth(clusters: int, per_file: int, base: tuple[float, Run, Run, Run]) -> None:
    """The plan figures at ``clusters`` against those of the main run (linear growth is the size ratio)."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        files = max(1, clusters // per_file)
        repo_path = tmp / "desired"
        _, commit, size = build_repo(repo_path, files, per_file)
        cfg = write_config(tmp, repo_path, free_port(), "4s", size)
        fl = floor(repo_path, commit)
        first, second, third = plans(tmp, cfg)
        fl2 = floor(repo_path, commit)
    (fl0, first0, second0, third0), big = base, (fl + fl2) / 2
    print(f"\ngrowth to {files * per_file:,} clusters (linear would be "
          f"{files * per_file / (len(json.loads(first0.out)['changes']) / 2):.1f}x):")
    for what, a, b in (("floor", fl0, big), ("plan, first run: time", first0.wall, first.wall),
                       ("plan, first run: peak RSS", first0.rss_mb, first.rss_mb),
                       ("plan, second run: time", second0.wall, second.wall),
                       ("plan, second run: peak RSS", second0.rss_mb, second.rss_mb),
                       ("plan --no-cache: time", third0.wall, third.wall),
                       ("plan --no-cache: peak RSS", third0.rss_mb, third.rss_mb)):
        print(f"  {what:<30}{a:>10.1f} -> {b:>10.1f}  {b / a:>6.2f}x")
    print(f"  first plan / floor: {first0.wall / fl0:.2f}x -> {first.wall / big:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--per-file", type=int, default=5)
    ap.add_argument("--passes", type=int, default=4, help="unchanged daemon passes to time (default 4)")
    ap.add_argument("--poll", default="4s", help="the daemon's poll interval (default 4s)")
    ap.add_argument("--skip-daemon", action="store_true")
    ap.add_argument("--growth", type=int, default=0, metavar="CLUSTERS",
                    help="then plan a repository of CLUSTERS clusters twice and print the growth (e.g. 50000)")
    args = ap.parse_args()
    files = max(1, args.clusters // args.per_file)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        repo_path = tmp / "desired"
        t0 = time.perf_counter()
        repo, commit, size = build_repo(repo_path, files, args.per_file)
        print(f"repo: {files} files, {files * args.per_file} clusters in 2 regions, "
              f"{size / 1e6:.1f} MB of YAML, built in {time.perf_counter() - t0:.1f}s")
        port = free_port()
        cfg = write_config(tmp, repo_path, port, args.poll, size)
        rows: list[tuple[str, float, str, str]] = []
        fl = min(floor(repo_path, commit) for _ in range(2))
        rows.append(("floor: pygit2 read + Jinja sandbox + libyaml", fl, "", ""))

        v = cli("validate", str(repo_path), cwd=tmp)
        assert v.code == 0, v.out + v.err
        rows.append(("reconciler validate apps/", v.wall, f"{v.rss_mb:.0f}", ""))

        first, second, third = plans(tmp, cfg)
        changes = len(json.loads(first.out)["changes"])
        rows.append((f"plan --format json ({changes:,} changes), first run", first.wall, f"{first.rss_mb:.0f}",
                     parsed(first.err)))
        rows.append(("plan --format json, second run (same inputs)", second.wall, f"{second.rss_mb:.0f}",
                     parsed(second.err)))
        rows.append(("the same with --no-cache (evaluated again)", third.wall, f"{third.rss_mb:.0f}",
                     parsed(third.err)))
        fl2 = floor(repo_path, commit)
        rows.append(("floor, measured again", fl2, "", ""))

        if not args.skip_daemon:
            frozen = cli("freeze", "--config", str(cfg), "--reason", "bench: plan and judge, run nothing", cwd=tmp)
            assert frozen.code == 0, frozen.err
            unchanged, one, rss, _ = daemon(cfg, tmp, repo, repo_path, args.per_file, port, args.passes)
            mean = sum(unchanged) / max(len(unchanged), 1)
            rows.append((f"daemon pass, nothing changed (mean of {len(unchanged)})", mean, f"{rss:.0f}", ""))
            rows.append(("daemon pass, one file changed", one, f"{rss:.0f}", ""))

        base = (fl + fl2) / 2
        print(f"\n{'what':<50}{'wall s':>9}{'/ floor':>9}{'RSS MB':>8}{'parsed':>8}")
        for what, wall, rss_s, n in rows:
            print(f"{what:<50}{wall:>9.3f}{wall / base:>8.2f}x{rss_s:>8}{n:>8}")
        print(f"\nfloor used for the ratios: {base:.3f}s (mean of the two floor figures)")
    if args.growth:
        growth(args.growth, args.per_file, (base, first, second, third))


if __name__ == "__main__":
    main()
