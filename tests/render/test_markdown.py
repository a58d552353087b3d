"""What a reviewer sees in the pull request: golden Markdown per scenario, splitting, escaping, secrets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import render
from reconciler.core import errors, model
from tests.render import factory

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def golden(name: str, text: str) -> None:
    """Compare with ``golden/NAME.md``; ``UPDATE_GOLDEN=1 pytest tests/render`` accepts a new rendering."""
    path = GOLDEN / f"{name}.md"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; review, then UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("name", sorted(factory.SCENARIOS))
def test_every_scenario_matches_its_golden_file(name: str) -> None:
    parts = render.render_markdown(factory.SCENARIOS[name]())
    assert len(parts) == 1
    golden(name, parts[0])


def test_a_first_deploy_shows_every_field_as_added_and_both_waves() -> None:
    text = render.render_markdown(factory.first_deploy())[0]
    assert "### reconciler plan: live state → `5e6f7a8b`" in text
    assert "+ image: checkout-1.0" in text and "+ capacity: min 2, desired 3, max 6" in text
    assert "**us-east-1** · create — → checkout-main-v000 · wave 1" in text
    assert "**eu-west-1** · create — → checkout-main-v000 · wave 2" in text
    assert "| — → checkout-main-v000 |" in text
    assert text.rstrip().endswith(
        "**Plan: 2 to create, 0 to replace, 0 to resize, 0 to roll back, 0 to destroy; 0 need approval, 0 denied**")


def test_an_image_change_shows_old_and_new_once_for_both_regions() -> None:
    text = render.render_markdown(factory.image_change())[0]
    assert "### reconciler plan: `1a2b3c4d` → `5e6f7a8b`" in text
    assert text.count("```diff") == 1
    assert "- image: checkout-1.0\n+ image: checkout-2.0" in text
    assert "| `checkout-1.0` → `checkout-2.0` |" in text and "checkout-main-v004 → checkout-main-v005" in text
    assert "! user_data: (changed, hidden)" in text and "! tags.db_token: (changed, hidden)" in text
    assert "  tags.team: payments" in text


def test_regions_with_different_live_state_get_a_diff_each() -> None:
    old_east, old_west, new = factory.spec(), factory.spec(image="checkout-0.9"), factory.spec(image="checkout-2.0")
    plan = factory.plan(factory.replace(new, factory.group(old_east, "us-east-1", 1)),
                        factory.replace(new, factory.group(old_west, "eu-west-1", 1), wave=1))
    text = render.render_markdown(plan)[0]
    assert text.count("```diff") == 2
    assert "- image: checkout-1.0" in text and "- image: checkout-0.9" in text


def test_a_capacity_only_change_is_a_resize_with_the_image_unchanged() -> None:
    text = render.render_markdown(factory.capacity_only())[0]
    assert "- capacity: min 2, desired 3, max 6\n+ capacity: min 2, desired 5, max 8" in text
    assert "  image: checkout-1.0" in text
    assert "| **resize** | checkout-main-v001 → checkout-main-v001 | — | `2/3/6` → `2/5/8` |" in text


def test_deny_and_approve_are_marked_in_the_table_the_sections_and_the_summary() -> None:
    text = render.render_markdown(factory.deny_and_approve())[0]
    assert text.splitlines()[2].startswith("⛔ **deny**")
    assert "| ✋ approve |" in text and "| ⛔ deny |" in text
    assert "- ✋ `protected-account` **needs approval**: account payments-prod is protected" in text
    assert "- ⛔ `instance-types` **denied**: x2iedn.32xlarge is not in the allowed" in text
    assert "- ⚠️ `change-window`: Friday 16:00 UTC: late in the week \\| be ready to roll back" in text
    assert "; 2 need approval, 1 denied**" in text


def test_a_destroy_shows_everything_removed_and_no_next_group() -> None:
    text = render.render_markdown(factory.destroy_under_prune())[0]
    assert "| **destroy** | search-main-v003 → — | ~~`search-7`~~ |" in text
    assert "- image: search-7" in text and "+ image" not in text
    assert "2 to destroy" in text


def test_a_revert_is_a_rollback_to_the_retained_group() -> None:
    text = render.render_markdown(factory.revert())[0]
    assert "| **rollback** | checkout-main-v001 → checkout-main-v000 | `checkout-2.0` → `checkout-1.0` |" in text
    assert "3. enable checkout-main-v000\n4. disable checkout-main-v001" in text


def test_spec_problems_come_first_with_file_and_line() -> None:
    text = render.render_markdown(factory.broken_spec())[0]
    problems = text.index("apps/billing.yaml:4: clusters[0].image:")
    assert problems < text.index("apps/cart.yaml:11: clusters[0].capacity: needs min <= desired")
    assert problems < text.index("| application |")
    assert "#### ⛔ 2 spec problems: these applications are not planned until fixed" in text


def test_problems_alone_say_nothing_else_was_planned() -> None:
    plan = factory.plan(problems=factory.broken_spec().problems)
    text = render.render_markdown(plan)[0]
    assert "apps/cart.yaml:11:" in text and "No changes for the applications that validate." in text
    assert "| application |" not in text


def test_no_changes_is_a_short_comment() -> None:
    text = render.render_markdown(factory.no_changes())[0]
    assert text.startswith(render.MARKER) and "**No changes**" in text
    assert len(text.splitlines()) <= 5


def test_a_large_plan_is_split_into_parts_that_each_stand_alone() -> None:
    plan = factory.large(30)
    parts = render.render_markdown(plan, max_chars=12_000)
    golden("split", "".join(parts))
    _assert_parts_stand_alone(plan, parts, 12_000)


@pytest.mark.parametrize("limit", [3_000, 5_000, 9_999, 40_000])
def test_every_part_is_under_the_limit_whatever_the_limit(limit: int) -> None:
    plan = factory.large(60)
    parts = render.render_markdown(plan, max_chars=limit)
    _assert_parts_stand_alone(plan, parts, limit)


def _assert_parts_stand_alone(plan: model.Plan, parts: list[str], limit: int) -> None:
    assert len(parts) > 1
    clusters_seen: list[str] = []
    for i, part in enumerate(parts, 1):
        assert len(part) <= limit
        assert part.startswith(render.MARKER + "\n")
        assert f"— Part {i} of {len(parts)}" in part.splitlines()[1]
        assert "| application | cluster |" in part
        assert part.count("<details>") == part.count("</details>") >= 1
        assert part.rstrip().endswith(f"**{render.summary_line(plan)}**")
        names = re.findall(r"<summary><b>([^<]+)</b>", part)
        for name in names:
            assert part.count(f"| {name} |") == 2, f"both rows of {name} travel with its section"
        clusters_seen += names
    assert clusters_seen == sorted({c.cluster for c in plan.changes}), "every cluster once, in order"
    assert "apps/cart.yaml:11:" in parts[0]
    assert all("> ⛔ 2 spec problems: see part 1." in p for p in parts[1:])


def test_a_cluster_too_large_for_one_part_keeps_its_rows_and_points_to_the_json() -> None:
    regions = tuple(f"region-{i:02d}" for i in range(40))
    s = factory.spec(regions=regions)
    plan = factory.plan(*(factory.create(s, r, wave=i) for i, r in enumerate(regions)))
    parts = render.render_markdown(plan, max_chars=9_000)
    assert all(len(p) <= 9_000 for p in parts)
    assert "see `reconciler plan --format json` for this cluster's steps" in parts[0]
    assert parts[0].count("| checkout | checkout-main |") == 40


def test_a_limit_too_small_for_one_row_is_an_error_not_a_broken_comment() -> None:
    with pytest.raises(errors.ReconcilerError, match="raise the limit"):
        render.render_markdown(factory.large(3), max_chars=900)


def test_notes_go_last_and_count_against_the_limit() -> None:
    notes = "#### Not applied now\n\n- ✋ app01-main in us-east-1: waiting for approval\n"
    parts = render.render_markdown(factory.large(30), max_chars=12_000, notes=notes)
    assert all(len(p) <= 12_000 for p in parts)
    assert "Not applied now" in parts[-1] and not any("Not applied now" in p for p in parts[:-1])
    assert render.notes_markdown([], []) == ""


def test_values_cannot_break_the_table_or_inject_html() -> None:
    s = factory.spec(image="img|<details>`x`")
    verdict = model.PolicyVerdict("odd", model.Verdict.WARN, "a | b <script>alert(1)</script>\nsecond line")
    plan = factory.plan(factory.create(s, "us-east-1", verdicts=(verdict,)))
    text = render.render_markdown(plan)[0]
    row = next(line for line in text.splitlines() if line.startswith("| checkout |"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 10, row
    assert "<script>" not in text
    assert sum(line.startswith("<details>") for line in text.splitlines()) == 1
    assert "a \\| b &lt;script&gt;alert(1)&lt;/script&gt;\\nsecond line" in text  # the newline shown, not kept
    assert "`` img\\|<details>`x` ``" in row


def test_secrets_never_appear_in_any_rendering() -> None:
    plan = factory.image_change()
    outputs = [*render.render_markdown(plan), render.render_text(plan, color=False),
               render.render_text(plan, color=True), repr(render.render_json(plan))]
    for out in outputs:
        assert "hunter" not in out and "s3cr3t" not in out


@settings(max_examples=60, deadline=None)
@given(clusters=st.integers(1, 25), regions=st.integers(1, 12), limit=st.integers(1_500, 30_000),
       problems=st.booleans(), notes=st.integers(0, 40))
def test_parts_never_exceed_the_limit_and_keep_every_cluster_once(
    clusters: int, regions: int, limit: int, problems: bool, notes: int
) -> None:
    names = tuple(f"region-{r}" for r in range(regions))
    changes = [factory.create(factory.spec(f"a{i}", regions=names), r, wave=w)
               for i in range(clusters) for w, r in enumerate(names)]
    plan = factory.plan(*changes, problems=factory.broken_spec().problems if problems else ())
    note_text = "#### Not applied now\n\n" + "".join(f"- ✋ a{i}-main in region-0: held\n" for i in range(notes))
    try:
        parts = render.render_markdown(plan, max_chars=limit, notes=note_text if notes else "")
    except errors.ReconcilerError as exc:
        assert "raise the limit" in str(exc)
        return
    assert all(len(p) <= limit for p in parts)
    seen = [n for p in parts for n in re.findall(r"<summary><b>([^<]+)</b>", p)]
    assert seen == [f"a{i}-main" for i in range(clusters)]
    assert all(p.count("<details>") == p.count("</details>") for p in parts)
