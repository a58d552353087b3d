"""A CLI run imports only what it uses: the cloud SDKs, other databases' drivers and the console's web stack
cost tens of MB of RSS each (cerberus and prometheus_client 6 and 11 MB), so a local-only ``validate`` or
``plan`` of good specs must not load them (counted in a real
process's ``sys.modules``, since the test process itself has imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Env, app_spec

# Run the real CLI in a fresh interpreter and write the modules it loaded, whatever its exit code.
_PROBE = """
import json, sys
from reconciler import cli
try:
    code = cli.main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(sorted(sys.modules), f)
sys.exit(code)
"""

# Packages a local-provider command has no use for: (top-level or dotted) module name prefixes.
UNUSED = ("boto3", "botocore", "google.cloud", "google.api_core", "googleapiclient", "azure", "msal",
          "werkzeug", "reconciler.console", "sqlalchemy.dialects.postgresql", "psycopg", "psycopg2",
          "cloudfoundry_client", "moto",
          "cerberus",  # only for a spec the fast check refuses, or a policy file (``specs.validator``)
          "prometheus_client")  # only for a metric, and a preview counts none (``runtime.metrics``)


def _loaded(tmp_path: Path, *args: str) -> list[str]:
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert out.exists(), proc.stderr
    loaded: list[str] = json.loads(out.read_text(encoding="utf-8"))
    return [m for m in loaded if any(m == u or m.startswith(u + ".") for u in UNUSED)]


@pytest.mark.parametrize("command", ["validate", "plan", "status"])
def test_a_local_only_command_imports_no_cloud_sdk_nor_web_stack(env: Env, tmp_path: Path, command: str) -> None:
    env.repo.write("apps/checkout.yaml", app_spec(image="{{ values.image }}-1.0"))
    env.repo.write("apps/values.yaml", "image: checkout\n")
    env.repo.commit("one app")
    args = (["validate", str(env.repo.path / "apps")] if command == "validate"
            else [command, "--config", str(env.config), "--format", "json"])
    assert _loaded(tmp_path, *args) == []
