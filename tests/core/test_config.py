"""The config is checked whole at load: every bad value is a `file:line: field: message`, never a traceback."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from reconciler.config import file as config_file
from reconciler.config import settings as config_mod
from reconciler.core import durations, errors
from tests.conftest import ROOT, DesiredRepo, app_spec, run_cli

BASE = "repo: {{url: {repo}, branch: main, path: apps}}\nstate_dir: {state}\n"
"""Two lines; every case's text starts on line 3."""


def _write(tmp_path: Path, body: str | bytes) -> Path:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/checkout.yaml", app_spec(regions=("us-east-1",))).commit("v1")
    path = tmp_path / "config.yaml"
    head = BASE.format(repo=repo.path, state=tmp_path / "state")
    if isinstance(body, bytes):
        path.write_bytes(head.encode() + body)
    else:
        path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


BAD = [
    ("execution: {max_attempts: lots}\n",
     ":3: execution.max_attempts: expected a whole number from 1 to 1000, got 'lots'"),
    ("execution:\n  max_parallel: 0\n", ":4: execution.max_parallel: must be from 1 to 256, got 0"),
    ("execution: {step_retries: 2.5}\n", ":3: execution.step_retries: expected a whole number"),
    ("execution: {lease_ttl: 0s}\n", ":3: execution.lease_ttl: must be at least 1s"),
    ("providers:\n  local:\n    accounts:\n      default:\n        faults: {rate: high}\n",
     ":7: providers.local.accounts.default.faults.rate: expected a number, got 'high'"),
    ("providers: {local: {accounts: {default: {regions: 5}}}}\n",
     ":3: providers.local.accounts.default.regions: expected a list of names"),
    ("providers:\n  local:\n    accounts:\n      default: {boot_second: 5}\n",
     ":6: providers.local.accounts.default.boot_second: unknown field; did you mean boot_seconds?"),
    ("providers: {local: {accounts: {default: {faults: {calls: [boot]}}}}}\n",
     ":3: providers.local.accounts.default.faults.calls: unknown ['boot']"),
    ("providers: {aws: {accounts: {prod: {regions: us-east-1}}}}\n",
     ":3: providers.aws.accounts.prod.regions: expected a list of names"),
    ("providers: {gcp: {accounts: {prod: {regions: [europe-west1]}}}}\n",
     ":3: providers.gcp.accounts.prod.project: required"),
    ("providers: {openstack: {accounts: {prod: {}}}}\n", ":3: providers.openstack: openstack: no provider named"),
    ("providers: {azure: {accounts: {prod: {subscriptin: x}}}}\n",
     ":3: providers.azure.accounts.prod.subscriptin: unknown field; did you mean subscription?"),
    ("providers: {cloudfoundry: {accounts: {prod: {api_url: api.example.com}}}}\n",
     ":3: providers.cloudfoundry.accounts.prod.api_url: an http(s) URL"),
    ("providers: {local: {region: x}}\n", ":3: providers.local.region: unknown field; allowed: accounts"),
    ("http: {listen: 'localhost:http'}\n", ":3: http.listen: 'localhost:http': the port must be a number"),
    ("http: {listen: '127.0.0.1:99999'}\n", ":3: http.listen: '127.0.0.1:99999': port 99999 is out of range"),
    ("http: {listen: 8787}\n", ":3: http.listen: '8787': expected host:port"),
    ("http: {max_body: huge}\n", ":3: http.max_body: 'huge' is not a size"),
    ("http: {max_body: 1GiB}\n", ":3: http.max_body: must be from 1KiB to 64MiB, got '1GiB'"),
    ("poll: {interval: 100000d}\n", ":3: poll.interval: '100000d' is longer than the maximum of 366d"),
    ("poll: {interval: .inf}\n", ":3: poll.interval: inf is longer than the maximum of 366d"),
    ("poll: {interval: 0s}\n", ":3: poll.interval: must be at least 100ms"),
    ("poll: {interval: soon}\n", ":3: poll.interval: 'soon' is not a duration"),
    ("daemon: 5\n", ":3: daemon: expected a mapping, got a number"),
    ("daemon: {shutdown_deadline: later}\n", ":3: daemon.shutdown_deadline: 'later' is not a duration"),
    ("daemon: {shutdown_deadline: 2h}\n", ":3: daemon.shutdown_deadline: '2h' is longer than the maximum of 1h"),
    ("approvals: {ttl: -5}\n", ":3: approvals.ttl: a duration cannot be negative"),
    ("log: {level: loud}\n", ":3: log.level: 'loud' is not a log level"),
    ("schedules:\n  - {cron: '0 25 * * *'}\n", ":4: schedules[0].cron: '0 25 * * *'"),
    ("schedules: [{cron: '0 3 * *'}]\n", ":3: schedules[0].cron: '0 3 * *': expected five crontab fields"),
    ("prune: yes please\n", ":3: prune: expected true or false, got 'yes please'"),
    ("prune: false\nprune: true\n", ":4: prune: given twice"),
    ("state: mysql://db/x\n", ":3: state: 'mysql://db/x' is not a state URL"),
    ("policies: {freeze: true}\n", ":3: policies: unknown field; guardrail settings live in policies.yaml"),
    ("pol: 1\n", ":3: pol: unknown field; did you mean poll?"),
    ("webhook: {secret: x}\n", ":3: webhook.secret: unknown field; did you mean secret_file?"),
    ("ha: {enabled: sometimes}\n", ":3: ha.enabled: expected auto, true or false, got 'sometimes'"),
    ("ha:\n  heartbeat: 5s\n  takeover: 10s\n", ":5: ha.takeover: must be at least three heartbeats (15s)"),
    ("ha: {heartbeat: 20s}\n", ":3: ha.heartbeat: must be at most a third of ha.takeover (30s), got '20s'"),
    ("ha: {takeover: 2h}\n", ":3: ha.takeover: '2h' is longer than the maximum of 1h"),
    ("ha: {lease: 5s}\n", ":3: ha.lease: unknown field; allowed: enabled, heartbeat, takeover"),
]


@pytest.mark.parametrize(("body", "expected"), BAD, ids=[b[1].split(": ")[1] for b in BAD])
def test_a_bad_value_is_an_error_at_load_naming_file_line_and_field(tmp_path: Path, body: str,
                                                                      expected: str) -> None:
    path = _write(tmp_path, body)
    res = run_cli("status", "--config", str(path), config_first=True)
    assert res.code == 1
    assert f"{path}{expected}" in res.err, res.err
    assert "Traceback" not in res.err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "execution: {max_attempts: lots, max_parallel: 0}\nhttp: {listen: 'x:y'}\n")
    with pytest.raises(errors.ConfigError) as err:
        config_mod.load_config(path)
    lines = str(err.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["execution.max_attempts", "execution.max_parallel",
                                                       "http.listen"]


@pytest.mark.parametrize("spec_path", ["../../etc", "/etc", "apps/../../x"])
def test_a_spec_path_outside_the_repository_is_refused(tmp_path: Path, spec_path: str) -> None:
    path = _write(tmp_path, "")
    text = path.read_text().replace("path: apps", f"path: '{spec_path}'")
    path.write_text(text)
    res = run_cli("plan", "--config", str(path), config_first=True)
    assert res.code == 1 and f"{path}:1: repo.path: '{spec_path}' must be a directory inside the repository" in res.err


def test_a_config_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, b"prune: false\nlog: {level: \xff}\n")
    res = run_cli("plan", "--config", str(path), config_first=True)
    assert res.code == 1 and f"{path}:4: (file): not UTF-8 text" in res.err


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    (tmp_path / "state").write_text("not a directory")
    res = run_cli("plan", "--config", str(path), config_first=True)
    assert res.code == 1 and f"{path}:2: state_dir: {tmp_path / 'state'} exists and is not a directory" in res.err


def test_credentials_in_the_url_are_split_off_and_the_url_kept_clean(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    path.write_text(path.read_text().replace(
        "url: " + str(tmp_path / "desired"), "url: 'https://deploy:s3cr3t-t0ken@git.example.com/ops/desired.git'"))
    cfg = config_mod.load_config(path)
    assert cfg.repo_url == "https://deploy@git.example.com/ops/desired.git"
    assert cfg.git.username == "deploy" and cfg.git.token == "s3cr3t-t0ken"
    assert "s3cr3t" not in repr(cfg) and "s3cr3t" not in repr(cfg.git)
    assert any("move it to repo.token_file" in w for w in cfg.warnings)


def test_units_parse_with_one_function_each() -> None:
    assert durations.parse_duration("500ms", where="x") == 0.5
    assert durations.parse_duration("2h", where="x") == 7200
    assert durations.parse_size("1MiB", where="x") == 1024 * 1024
    assert durations.parse_size("64k", where="x") == 64_000
    assert durations.parse_size("10MB", where="x") == 10_000_000
    assert durations.parse_size(4096, where="x") == 4096
    for bad in ("1 TB", "-1", "lots", True):
        with pytest.raises(errors.ConfigError, match=r"^x: "):
            durations.parse_size(bad, where="x")
    assert config_mod.split_credentials("https://u:p%40ss@h:8443/r.git") == ("https://u@h:8443/r.git", "u", "p@ss")
    assert config_mod.split_credentials("git@github.com:o/r.git") == ("git@github.com:o/r.git", "", "")


def _config_blocks(doc: Path) -> list[str]:
    """The ```yaml blocks of a document that are daemon configs (their keys are config keys)."""
    out = []
    for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and set(data) <= set(config_file.TOP_KEYS) and \
                {"repo", "http", "providers", "daemon", "poll", "execution"} & set(data):
            out.append(block)
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/systemd.md", "docs/security.md", "docs/ha.md"])
def test_every_config_example_in_the_docs_loads(tmp_path: Path, doc: str) -> None:
    blocks = _config_blocks(ROOT / doc)
    assert blocks, f"{doc} shows no config example"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(block.replace("/var/lib/reconciler", str(tmp_path / "state")), encoding="utf-8")
        config_mod.load_config(path)


@pytest.mark.parametrize(("body", "expected"), [
    ("prune: false\n", config_mod.HaSettings(enabled=False)),
    ("state: postgresql://reconciler@db/reconciler\n", config_mod.HaSettings(enabled=True)),
    ("state: postgresql://db/r\nha: {enabled: false}\n", config_mod.HaSettings(enabled=False)),
    ("ha: {enabled: true, heartbeat: 1s, takeover: 3s}\n", config_mod.HaSettings(True, 1.0, 3.0)),
])
def test_ha_is_on_for_a_postgresql_state_url_and_off_for_sqlite_unless_set(
        tmp_path: Path, body: str, expected: config_mod.HaSettings) -> None:
    assert config_mod.load_config(_write(tmp_path, body)).ha == expected


def test_the_shipped_example_configs_load_with_the_documented_values() -> None:
    quickstart = config_mod.load_config(ROOT / "examples" / "config.yaml")
    assert quickstart.execution.poll_health_s == 0.5 and quickstart.http.listen is None
    unit = config_mod.load_config(ROOT / "systemd" / "config.example.yaml")
    assert unit.repo_url == "https://git.example.com/ops/desired-state.git"
    assert unit.git.token_file == Path("/etc/reconciler/git-token") and unit.git.token == ""
    assert unit.http.listen == "127.0.0.1:8787" and unit.http.max_body == 1024 * 1024
    assert unit.http.webhook_secret_file == Path("/etc/reconciler/webhook-secret")
    assert [(s.cron, s.reason) for s in unit.schedules] == [("0 3 * * *", "nightly-drift-check")]
    assert sorted(unit.providers) == ["aws", "gcp", "local"] and unit.shutdown_deadline_s == 30.0
