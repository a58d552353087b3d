"""A real daemon given a template that spins forever: the other applications keep reconciling, a fix commit
recovers it, and SIGTERM stops the process at once without leaving a rendering worker behind."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import app_spec
from tests.daemon.conftest import DaemonFactory

SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
ONE = ("us-east-1",)


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the rendering workers of a daemon)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return False
    return True


def test_a_spinning_template_is_stopped_the_others_reconcile_and_a_fix_recovers(
        daemon_factory: DaemonFactory) -> None:
    apps = {"checkout": app_spec(regions=ONE), "spin": app_spec("spin", regions=ONE) + SPIN + "\n"}
    d = daemon_factory(apps=apps, extra={"specs": {"render_timeout": "300ms"}}).start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the good application to deploy")
    problems = d.status()["problems"]
    assert problems == ["apps/spin.yaml:13: (file): template rendering took longer than 0.3s "
                        "(specs.render_timeout); it was stopped"]

    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=ONE)).commit("checkout v2")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "checkout v2 despite the spinning file")
    d.repo.write("apps/spin.yaml", app_spec("spin", regions=ONE)).commit("fix the loop")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001", "spin-main-v000"], "the fixed application")
    assert d.status()["problems"] == []

    assert d.proc is not None
    workers = children(d.proc.pid)
    assert workers, "templates render in worker processes"
    assert d.stop() == 0
    assert gone(workers)


def test_sigterm_while_a_pass_is_stuck_in_a_template_stops_at_once_and_leaves_no_worker(
        daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(apps={"checkout": app_spec(regions=ONE)}, extra={"specs": {"render_timeout": "10m"}}).start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    d.repo.write("apps/spin.yaml", app_spec("spin", regions=ONE) + SPIN + "\n").commit("a loop that never ends")
    assert d.proc is not None
    pid = d.proc.pid

    def spinning() -> bool:
        busy = []
        for w in children(pid):
            before = cpu_ticks(w)
            time.sleep(0.3)
            busy.append(cpu_ticks(w) > before)
        return any(busy)

    d.wait_for(spinning, "a worker busy with the endless template")
    workers = children(pid)
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    _out, err = d.proc.communicate(timeout=30)
    took = time.monotonic() - started

    assert d.proc.returncode == 0
    assert took < 8, f"stopped after {took:.1f}s"
    assert gone(workers)
    assert "stopped" in err
