"""The same rollouts on one replica and on three sharing one PostgreSQL database; print the ratio.

    .venv/bin/python bench/ha_throughput.py [--clusters 48] [--boot 10] [--parallel 4] [--replicas 3]
                                            [--poll-health 100ms]

Starts a throwaway PostgreSQL server (Debian's server binaries, as the tests do), then for each
group size a fresh database, a Git repository of N one-cluster applications and that many real
``reconciler run`` processes on the local provider with ``boot`` seconds of instance boot and
``parallel`` executions per replica. It times first deploy -> every cluster serving, and reports
each replica's share (executions per process) and the speed-up. Work that waits on boots scales
with replicas; the ratio falls below N when the machine's cores, not the boots, are the limit.
``--poll-health`` is ``execution.poll_health`` of every replica (100ms, as the tests; the product's
default is 2s).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import DesiredRepo, PostgresServer
from tests.ha.conftest import Group, many_apps


def run(server: PostgresServer, replicas: int, clusters: int, boot: float, parallel: int,
        poll_health: str) -> tuple[float, list[int]]:
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        root = Path(tmp)
        group = Group(root, server.create_database(), DesiredRepo(root / "desired"))
        many_apps(group.repo, clusters)
        group.repo.commit(f"{clusters} applications")
        for _ in range(replicas):
            group.add(boot_seconds=boot, max_parallel=parallel, ha={"heartbeat": "500ms", "takeover": "5s"},
                      poll_health=poll_health)
        try:
            group.start_all()
            took = group.wait(lambda: sum(1 for n in group.serving().values() if n) == clusters,
                              f"{clusters} clusters serving", timeout=600)
            shares = sorted(group.executions_by_pid().values())
        finally:
            for d in group.replicas:
                if d.proc is not None and d.proc.poll() is None:
                    d.proc.send_signal(signal.SIGTERM)
                    d.proc.communicate(timeout=60)
        return took, shares


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=48)
    ap.add_argument("--boot", type=float, default=10.0)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--poll-health", default="100ms", help="execution.poll_health of every replica")
    args = ap.parse_args()
    server = PostgresServer()
    try:
        one, one_shares = run(server, 1, args.clusters, args.boot, args.parallel, args.poll_health)
        many, many_shares = run(server, args.replicas, args.clusters, args.boot, args.parallel, args.poll_health)
    finally:
        server.close()
    print(f"{args.clusters} clusters, boot {args.boot:g}s, {args.parallel} executions per replica, "
          f"poll_health {args.poll_health}")
    print(f"  1 replica:  {one:6.1f}s  executions per replica {one_shares}")
    print(f"  {args.replicas} replicas: {many:6.1f}s  executions per replica {many_shares}")
    print(f"  speed-up: {one / many:.2f}x (target >= 2.5x for 3 replicas)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
