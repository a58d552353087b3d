"""Cron schedules per environment: a waiting version enters only at a scheduled time, across restarts."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.core import model, schedules
from specs import schema
from tests.conftest import DesiredRepo, run_cli
from tests.environments.test_promotion_flow import MONDAY_NOON, Pipeline, pipeline_spec

TWO_PM = MONDAY_NOON + 2 * 3600
SPEC = pipeline_spec(soak="0s", approval="", extra_prod='schedules: ["0 14 * * mon-fri"]')


@pytest.fixture
def pipe(tmp_path: Path) -> Any:
    p = Pipeline(tmp_path)
    yield p
    p.close()


def test_a_version_waits_for_the_next_scheduled_time_and_a_restart_keeps_it(pipe: Pipeline) -> None:
    pipe.commit("1.0", SPEC)
    for _ in range(3):
        pipe.reconcile()
    assert pipe.images("staging") == {"checkout-1.0"}
    prod = pipe.envs()["prod"]
    assert prod["hold"]["kind"] == "schedule" and prod["hold"]["until"] == TWO_PM
    assert prod["hold"]["message"] == ("version 1.0 enters prod at its next scheduled time (0 14 * * mon-fri): "
                                       "2h left")
    assert prod["schedules"] == [{"cron": "0 14 * * mon-fri", "timezone": "UTC"}]
    assert pipe.images("prod") == set()

    pipe.clock.advance(2 * 3600 - 60)
    pipe.restart()  # the time it began waiting is in the store
    pipe.reconcile()
    assert pipe.images("prod") == set()
    assert pipe.envs()["prod"]["hold"]["until"] == TWO_PM

    pipe.clock.advance(90)  # 14:00:30: a pass after the firing lets it in
    pipe.reconcile()
    assert pipe.images("prod") == {"checkout-1.0"}

    pipe.clock.advance(600)
    pipe.commit("1.1", SPEC)
    for _ in range(3):
        pipe.reconcile()
    assert pipe.images("staging") == {"checkout-1.1"}
    assert pipe.images("prod") == {"checkout-1.0"}
    assert pipe.envs()["prod"]["hold"]["until"] == TWO_PM + 86400, "the next firing: Tuesday 14:00"


def test_next_firing_reads_cron_in_its_time_zone() -> None:
    paris = [model.Schedule("0 9 * * mon-thu", "Europe/Paris")]
    winter = datetime(2026, 12, 2, 10, 0, tzinfo=UTC).timestamp()  # a Wednesday, 11:00 in Paris
    assert schedules.next_firing(paris, winter) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC).timestamp()
    summer = datetime(2026, 7, 1, 6, 0, tzinfo=UTC).timestamp()
    assert schedules.next_firing(paris, summer) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC).timestamp()
    at_the_minute = datetime(2026, 12, 2, 9, 0, tzinfo=UTC).timestamp()
    assert schedules.next_firing([model.Schedule("0 9 * * *")], at_the_minute) == at_the_minute
    both = [model.Schedule("0 9 * * *"), model.Schedule("30 8 * * *")]
    assert schedules.next_firing(both, at_the_minute - 3600) == at_the_minute - 1800


def test_schedule_mistakes_name_their_field(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    spec = pipeline_spec(soak="0s", approval="", extra_prod=textwrap.dedent("""\
        schedules: ["0 25 * * *", {cron: "0 9 * *"}, {cron: "0 9 * * *", timezone: Europe/Pariss}]"""))
    repo.write("apps/values.yaml", 'checkout:\n  version: "1.0"\n').write("apps/checkout.yaml", spec).commit()

    res = run_cli("validate", str(repo.path))
    assert res.code == 1
    assert "environments[2].schedules[0]: '0 25 * * *' is not a cron expression: five fields" in res.out
    assert "environments[2].schedules[1].cron: '0 9 * *' is not a cron expression" in res.out
    assert "environments[2].schedules[2].timezone: unknown time zone 'Europe/Pariss'" in res.out


def test_the_delivery_path_and_the_json_schema_show_schedules(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/values.yaml", 'checkout:\n  version: "1.0"\n').write(
        "apps/checkout.yaml", pipeline_spec(soak="0s", approval="")).commit("base")
    repo.write("apps/values.yaml", 'checkout:\n  version: "1.1"\n').write("apps/checkout.yaml", SPEC).commit("new")
    res = run_cli("plan", "--repo", str(repo.path), "--base", "HEAD~1", "--format", "markdown")
    assert "3. `prod` runs `1.1` after `staging` run it healthy, at the next of `0 14 * * mon-fri`" in res.out, \
        res.out + res.err

    env = schema.json_schema()["properties"]["environments"]["items"]["properties"]
    assert "cron" in env["schedules"]["description"].lower()
    text, mapping = env["schedules"]["items"]["oneOf"]
    assert text["type"] == "string" and mapping["required"] == ["cron"]
    json.dumps(env)
