"""The JSON contract scripts rely on (DESIGN §5), terminal text with and without colour, validate output."""

from __future__ import annotations

import json

import pytest

from reconciler import render
from reconciler.core import errors
from tests.render import factory

CHANGE_KEYS = {"change_id", "application", "cluster", "provider", "account", "region", "action", "wave",
               "current", "desired", "steps", "verdicts", "verdict"}


@pytest.mark.parametrize("name", sorted(factory.SCENARIOS))
def test_json_keeps_the_contract_keys_and_is_serialisable(name: str) -> None:
    plan = factory.SCENARIOS[name]()
    doc = json.loads(json.dumps(render.render_json(plan)))
    assert {"plan_id", "commit", "base_commit", "verdict", "changes", "plan_verdicts", "problems", "summary",
            "live_fingerprint"} <= set(doc)
    assert doc["plan_id"] == plan.plan_id and doc["verdict"] in ("allow", "warn", "approve", "deny")
    assert len(doc["changes"]) == len(plan.changes)
    for c in doc["changes"]:
        assert set(c) >= CHANGE_KEYS
        assert c["action"] in ("create", "replace", "resize", "destroy", "rollback")
        assert all({"kind", "server_group", "description"} <= set(s) for s in c["steps"])
        assert all(set(v) == {"policy", "verdict", "message"} for v in c["verdicts"])


def test_json_current_and_desired_carry_server_groups_and_fields() -> None:
    doc = render.render_json(factory.image_change())
    c = doc["changes"][0]
    assert c["current"] == {
        "server_group": "checkout-main-v004", "image": "checkout-1.0", "instance_type": "m5.large",
        "capacity": {"min": 2, "desired": 3, "max": 6}, "enabled": True, "healthy": 3, "instances": 3,
        "spec_hash": c["current"]["spec_hash"],
    }
    assert c["desired"]["server_group"] == "checkout-main-v005" and c["desired"]["image"] == "checkout-2.0"
    assert c["desired"]["tags"] == {"team": "payments", "db_token": "(hidden)"}
    assert len(c["desired"]["user_data_sha256"]) == 12
    assert c["steps"][0] == {"kind": "create", "server_group": "checkout-main-v005",
                             "capacity": {"min": 2, "desired": 3, "max": 6},
                             "description": "create checkout-main-v005 (min 2, desired 3, max 6)"}


def test_json_nulls_what_does_not_exist() -> None:
    create = render.render_json(factory.first_deploy())["changes"][0]
    destroy = render.render_json(factory.destroy_under_prune())["changes"][0]
    assert create["current"] is None and create["desired"]["server_group"] == "checkout-main-v000"
    assert destroy["desired"] is None and destroy["current"]["server_group"] == "search-main-v003"


def test_json_summary_problems_and_plan_verdicts() -> None:
    doc = render.render_json(factory.deny_and_approve())
    assert doc["summary"] == {"create": 0, "replace": 3, "resize": 0, "destroy": 0, "rollback": 0,
                              "need_approval": 2, "denied": 1}
    assert doc["verdict"] == "deny" and doc["plan_verdicts"][0]["policy"] == "change-window"
    broken = render.render_json(factory.broken_spec())
    assert broken["problems"][0] == {"file": "apps/cart.yaml", "line": 11, "field": "clusters[0].capacity",
                                     "message": "needs min <= desired <= max, got min 9, desired 2, max 6"}


def test_text_without_colour_has_no_escape_codes() -> None:
    text = render.render_text(factory.deny_and_approve(), color=False)
    assert "\033[" not in text
    assert "replace checkout-main aws/payments-prod us-east-1: checkout-main-v007 -> checkout-main-v008" in text
    assert "- image: checkout-1.0\n" in text and "+ image: checkout-2.0\n" in text
    assert "  instance_type: m5.large" not in text, "terminals show only what changes"
    assert "    APPROVE [protected-account] account payments-prod is protected" in text
    assert "    DENY [instance-types] x2iedn.32xlarge is not in the allowed" in text
    assert "WARN [change-window] Friday" in text and "traffic-guard" not in text
    assert text.endswith(render.summary_line(factory.deny_and_approve()) + "\n")


def test_text_with_colour_paints_actions_diffs_and_verdicts() -> None:
    text = render.render_text(factory.deny_and_approve(), color=True)
    assert "\033[1;33mreplace checkout-main\033[0m" in text
    assert "\033[31m- image: checkout-1.0\033[0m" in text and "\033[32m+ image: checkout-2.0\033[0m" in text
    assert "\033[1;31mDENY [instance-types]\033[0m x2iedn" in text
    assert render.render_text(factory.deny_and_approve(), color=False) == _strip_ansi(text)


def test_text_lists_problems_first_and_says_when_nothing_changes() -> None:
    text = render.render_text(factory.broken_spec(), color=False)
    assert text.index("apps/billing.yaml:4: clusters[0].image:") < text.index("create checkout-main")
    assert "No changes: live state matches the desired state." in render.render_text(factory.no_changes(),
                                                                                     color=False)


def test_validate_output_is_one_sorted_line_per_problem() -> None:
    problems = [*factory.broken_spec().problems, errors.SpecProblem("apps/cart.yaml", 2, "", "not a mapping")]
    assert render.render_problems([*problems, problems[0]]) == (
        "apps/billing.yaml:4: clusters[0].image: '{{ values.billing_image }}' is undefined\n"
        "apps/cart.yaml:2: (file): not a mapping\n"
        "apps/cart.yaml:11: clusters[0].capacity: needs min <= desired <= max, got min 9, desired 2, max 6\n"
    )
    assert render.render_problems([]) == ""


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\033\[[0-9;]*m", "", text)
