"""policies.yaml: validated with file:line errors, layered by criticality, application and cluster."""

from __future__ import annotations

import pytest

from reconciler.core.model import Action, Verdict
from specs import policy_file
from tests.policies.builders import REDBLACK, change, group, judge, messages, verdicts

F = "apps/policies.yaml"


@pytest.mark.parametrize(("text", "expected"), [
    ("defaults:\n  colour: red\n",
     "apps/policies.yaml:2: defaults.colour: unknown field; allowed here: allowed_images, "),
    ("defaults:\n  windows:\n    allow:\n      - {from: '09:00', to: '17:00', dayz: [mon]}\n",
     "apps/policies.yaml:4: defaults.windows.allow[0].dayz: unknown field; allowed here: days, from, timezone, to"),
    ("applications:\n  checkout:\n    waves: {first: 1}\n",
     "apps/policies.yaml:3: applications.checkout.waves.first: unknown field; allowed here: first_wave_size, "
     "max_regions_per_wave, min_pause"),
    ("defaults:\n  windows: {allow: [{from: '24:00', to: '06:00'}]}\n",
     "apps/policies.yaml:2: defaults.windows.allow[0].from: value does not match regex"),
    ("criticality:\n  urgent: {}\n", "apps/policies.yaml:2: criticality.urgent: unallowed value urgent"),
    ("defaults:\n  mass_deletion: {max_share: 1.5}\n", "apps/policies.yaml:2: defaults.mass_deletion.max_share: max "
                                                       "value is 1"),
    ("freeze: {by: ann}\n", "apps/policies.yaml:1: freeze.reason: required field"),
    ("- a list\n", "apps/policies.yaml:1: (file): policies.yaml must be a mapping"),
    ("defaults: {a: 1\n", "apps/policies.yaml:2: (file): not valid YAML"),
    ("defaults: {}\ndefaults: {}\n", "apps/policies.yaml:2: defaults: duplicate key"),
])
def test_problems_name_file_line_and_field(text, expected) -> None:
    settings, problems = policy_file.load_policy_file(text, file=F)
    shown = [str(p) for p in problems]
    assert any(p.startswith(expected) for p in shown), shown
    assert settings.problems == tuple(problems), "the settings carry their problems to the policy-file rule"


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = "defaults:\n  colour: red\n  blast_radius: {max_clusters: 0}\nclusters:\n  x: {require_approval: maybe}\n"
    _settings, problems = policy_file.load_policy_file(text, file=F)
    assert [(p.line, p.field) for p in problems] == [
        (2, "defaults.colour"), (3, "defaults.blast_radius.max_clusters"), (5, "clusters.x.require_approval")]


def test_an_empty_or_missing_file_means_the_built_in_defaults() -> None:
    for text in ("", "# nothing yet\n", "---\n"):
        settings, problems = policy_file.load_policy_file(text, file=F)
        assert problems == [] and settings.problems == ()
        assert settings.global_settings()["mass_deletion"]["max_share"] == 0.5
        assert settings.for_cluster("a", "a-main", "critical")["require_approval"] == "production"


@pytest.mark.parametrize(("criticality", "app", "cluster", "key", "expected"), [
    ("normal", "checkout", "checkout-main", "require_approval", "never"),
    ("critical", "search", "search-main", "require_approval", "always"),       # criticality layer in the file
    ("critical", "checkout", "checkout-main", "require_approval", "never"),    # cluster beats criticality
    ("critical", "checkout", "checkout-other", "require_approval", "always"),
    ("normal", "checkout", "checkout-other", "protected_accounts", ["staging"]),  # application layer
    ("normal", "search", "search-main", "protected_accounts", []),
    ("critical", "search", "search-main", "waves", {"max_regions_per_wave": 1, "first_wave_size": 1,
                                                     "min_pause": "5m"}),     # merged key by key
    ("low", "search", "search-main", "waves", {"max_regions_per_wave": 0, "first_wave_size": 0, "min_pause": "5m"}),
])
def test_layers_resolve_most_specific_last_key_by_key(criticality, app, cluster, key, expected) -> None:
    text = """
defaults: {require_approval: never, waves: {min_pause: 5m}}
criticality: {critical: {require_approval: always}}
applications: {checkout: {protected_accounts: [staging]}}
clusters: {checkout-main: {require_approval: never}}
"""
    settings, problems = policy_file.load_policy_file(text, file=F)
    assert problems == []
    assert settings.for_cluster(app, cluster, criticality)[key] == expected


def test_a_top_level_freeze_is_a_freeze_everywhere() -> None:
    plan = judge([change(steps=REDBLACK)], yaml_text="freeze: {reason: black friday, by: release-team}\n",
                 live=[group("v000")])
    assert verdicts(plan, "freeze") == [Verdict.DENY]
    assert messages(plan, "freeze") == [
        "changes are frozen by release-team (policies.yaml): black friday; rollbacks may still run"]


def test_a_broken_policy_file_holds_everything_but_rollbacks() -> None:
    text = "defaults:\n  freez: {reason: incident}\n"  # a misspelt freeze must not mean "no freeze"
    deploy = change(steps=REDBLACK)
    rollback = change(Action.ROLLBACK, s=deploy.desired, steps=REDBLACK[1:3], region="r2")
    plan = judge([deploy, rollback], yaml_text=text, live=[group("v000")], broken_policy_file=True)
    assert verdicts(plan, "policy-file") == [Verdict.DENY]
    assert plan.changes[0].verdict is Verdict.DENY and plan.changes[1].verdict is not Verdict.DENY
    assert "apps/policies.yaml:2: defaults.freez: unknown field" in messages(plan, "policy-file")[0]


def test_the_documented_example_is_valid() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "policies.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    settings, problems = policy_file.load_policy_file(example, file="docs/policies.md")
    assert problems == []
    assert settings.for_cluster("search", "search", "normal")["windows"]["allow"][0]["to"] == "24:00"


def test_clusters_without_a_layer_of_their_own_share_one_resolved_dict() -> None:
    """One dict per criticality for every cluster only the defaults speak for, not one per cluster."""
    settings, problems = policy_file.load_policy_file(
        "defaults:\n  mass_deletion: {max_share: 0.5}\napplications:\n  shop:\n    mass_deletion: {max_share: 0.9}\n"
        "clusters:\n  web-main:\n    mass_deletion: {max_share: 0.7}\n", file=F)
    assert problems == []
    a, b = settings.for_cluster("a", "a-main", "normal"), settings.for_cluster("b", "b-main", "normal")
    assert a is b and a["mass_deletion"]["max_share"] == 0.5
    assert settings.for_cluster("a", "a-main", "critical") is not a
    assert settings.for_cluster("shop", "shop-main", "normal")["mass_deletion"]["max_share"] == 0.9
    assert settings.for_cluster("web", "web-main", "normal")["mass_deletion"]["max_share"] == 0.7
    assert settings.for_cluster("shop", "web-main", "normal")["mass_deletion"]["max_share"] == 0.7
    fresh = policy_file.load_policy_file(
        "defaults:\n  mass_deletion: {max_share: 0.5}\napplications:\n  shop:\n    mass_deletion: {max_share: 0.9}\n"
        "clusters:\n  web-main:\n    mass_deletion: {max_share: 0.7}\n", file=F)[0]
    for key in (("a", "a-main", "normal"), ("shop", "shop-main", "critical"), ("shop", "web-main", "low")):
        assert settings.for_cluster(*key) == fresh._resolve(*key)
