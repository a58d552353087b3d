"""The unit file passes ``systemd-analyze verify`` and keeps its hardening (exposure score)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "reconciler.service"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: run scripts/system-deps (Debian package systemd)")
    return tool


def test_the_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "reconciler.service"
    # verify checks that ExecStart exists: point it at this interpreter
    text = UNIT.read_text().replace("/usr/local/bin/reconciler run", f"{sys.executable} -m reconciler.cli run")
    unit.write_text(text)
    res = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False)
    problems = [line for line in res.stderr.splitlines() if "reconciler.service" in line]
    assert res.returncode == 0 and not problems, res.stderr


def test_the_unit_is_hardened() -> None:
    res = subprocess.run([_analyze(), "security", "--offline=yes", str(UNIT)], capture_output=True, text=True,
                         check=False)
    m = re.search(r"Overall exposure level for reconciler.service: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "ProtectSystem=strict",
                      "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "NoNewPrivileges=yes"):
        assert directive in text
