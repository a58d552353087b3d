"""The unit file passes ``systemd-analyze verify`` and keeps its hardening (exposure score)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "reconciler.service"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: run scripts/system-deps (Debian package systemd)")
    return tool


def test_the_unit_verifies() -> None:
    res = subprocess.run([_analyze(), "verify", str(UNIT)], capture_output=True, text=True, check=False)
    problems = [line for line in res.stderr.splitlines() if "reconciler.service" in line]
    assert res.returncode == 0 and not problems, res.stderr


def test_the_unit_is_hardened() -> None:
    res = subprocess.run([_analyze(), "security", "--offline=yes", str(UNIT)], capture_output=True, text=True,
                         check=False)
    m = re.search(r"Overall exposure level for reconciler.service: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0
    text = UNIT.read_text()
    for directive in ("Type=notify", "ExecStart=/usr/bin/env reconciler run", "ExecReload=/bin/kill -HUP $MAINPID",
                      "WatchdogSec=", "DynamicUser=yes", "ProtectSystem=strict",
                      "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "NoNewPrivileges=yes"):
        assert directive in text
