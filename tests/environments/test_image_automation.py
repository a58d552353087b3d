"""Image automation: a newer admitted image in every region becomes a commit, once; the next pass deploys it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pygit2
import pytest

from reconciler.config import settings as config_mod
from reconciler.core import automation, images
from reconciler.core import clock as clock_mod
from reconciler.runtime import engine as engine_mod
from specs import loader
from tests.conftest import DesiredRepo, app_spec, run_cli, write_config
from tests.environments.test_promote import blob

SPEC = textwrap.dedent("""\
    application: checkout
    owner: team@example.com
    version_from: checkout.version
    automation:
      image: "checkout-{version}-*"
      policy: "semver >=2.0 <3"
    clusters:
      - stack: main
        provider: local
        account: default
        regions: [us-east-1, eu-west-1]
        image: {name: "checkout-{version}-*", newest: true}
        instance_type: m5.large
        capacity: {min: 1, desired: 1, max: 2}
        health: {healthy_percent: 100, timeout: 5s}
    """)


def image(name: str, created: int, regions: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "created": created, **({"regions": regions} if regions else {})}


def remote(tmp_path: Path, images_list: list[dict[str, Any]], spec: str = SPEC) -> tuple[Path, Path]:
    """A bare desired-state repository and a config reading it, with the local provider's images."""
    work = DesiredRepo(tmp_path / "work")
    work.write("apps/values.yaml", 'checkout:\n  version: "2.0.0"  # written by image automation\n')
    work.write("apps/checkout.yaml", spec)
    work.commit("first")
    bare = tmp_path / "desired.git"
    pygit2.clone_repository(str(work.path), str(bare), bare=True)
    cfg = write_config(tmp_path / "config.yaml", tmp_path, tmp_path / "state", repo={"url": str(bare)},
                       providers={"local": {"accounts": {"default": {"boot_seconds": 0, "images": images_list}}}})
    return bare, cfg


def test_automation_commits_the_newest_admitted_version_once_and_the_next_pass_deploys_it(tmp_path: Path) -> None:
    bare, cfg = remote(tmp_path, [
        image("checkout-2.0.0-a", 1), image("checkout-2.0.5-a", 2),
        image("checkout-2.1.0-a", 3, ["us-east-1"]),  # not baked in eu-west-1 yet: not taken
        image("checkout-3.0.0-a", 4),  # outside the policy: ignored
        image("checkout-2.2.0-rc.1-a", 5),  # a pre-release: ignored
    ])
    clock = clock_mod.FakeClock()
    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock)
    try:
        engine.reconcile()
        looks = engine.automate()
        assert [(x.state, x.version, x.latest) for x in looks] == [("committed", "2.0.0", "2.0.5")]
        assert blob(bare, "apps/values.yaml") == 'checkout:\n  version: "2.0.5"  # written by image automation\n'
        head = pygit2.Repository(str(bare)).references["refs/heads/main"].peel(pygit2.Commit)
        assert head.author.name == "reconciler automation"
        assert head.message.startswith("Automation: checkout 2.0.0 -> 2.0.5 (semver >=2.0 <3")
        assert engine.automate() == []  # looked within this poll: no second look

        clock.advance(2)  # the next poll, before a pass read the commit: Git already has it, no second commit
        assert [(x.state, x.message) for x in engine.automate()] == [
            ("up_to_date", "apps/values.yaml already declares 2.0.5")]
        assert pygit2.Repository(str(bare)).references["refs/heads/main"].peel(pygit2.Commit).id == head.id

        engine.reconcile()  # the commit is what deploys
        live = {(g.region, g.launch.image) for g in engine.live.read(None).groups if g.enabled}
        assert live == {("us-east-1", "checkout-2.0.5-a"), ("eu-west-1", "checkout-2.0.5-a")}
        clock.advance(2)
        assert [(x.state, x.message) for x in engine.automate()] == [
            ("up_to_date", "Git has 2.0.5, the newest admitted is 2.0.5")]
        status = engine.status()
        events = engine.store.history(kinds=("image_automation",))
    finally:
        engine.close()
    assert status["automation"]["checkout"]["state"] == "up_to_date"
    assert status["automation"]["checkout"]["commit"] == str(head.id)
    assert [(e["application"], e["commit"], e["detail"]["version"]) for e in events] == [
        ("checkout", str(head.id), "2.0.5")]
    text = run_cli("status", "checkout", "--config", str(cfg))
    assert "automation (" in text.out and "up_to_date, newest admitted 2.0.5: Git has 2.0.5" in text.out, text.out


def test_a_version_whose_cluster_image_does_not_resolve_is_refused_and_recorded_once(tmp_path: Path) -> None:
    spec = SPEC.replace('image: {name: "checkout-{version}-*", newest: true}',
                        'image: {name: "checkout-{version}-*", newest: true, tags: {tested: "yes"}}')
    bare, cfg = remote(tmp_path, [{"name": "checkout-2.0.0-a", "tags": {"tested": "yes"}},
                                  image("checkout-2.0.7-a", 2)], spec)  # found by the automation, not the cluster
    before = str(pygit2.Repository(str(bare)).references["refs/heads/main"].target)
    clock = clock_mod.FakeClock()
    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock)
    try:
        engine.reconcile()
        first = engine.automate()
        clock.advance(2)
        second = engine.automate()
        events = engine.store.history(kinds=("image_automation", "image_automation_failed"))
    finally:
        engine.close()
    assert [x.state for x in first + second] == ["failed", "failed"]
    assert "refusing to promote checkout to 2.0.7" in first[0].message
    assert "no image matches name checkout-2.0.7-*, tag tested=yes" in first[0].message
    assert str(pygit2.Repository(str(bare)).references["refs/heads/main"].target) == before  # nothing pushed
    assert [e["kind"] for e in events] == ["image_automation_failed"]  # a failure is told once, not every poll


@pytest.mark.parametrize(("block", "want"), [
    ('{image: "checkout-{version}-*", policy: "semver >=2.0 <3 x"}',
     "apps/checkout.yaml:6: automation.policy: 'semver >=2.0 <3 x': 'x' is not a comparison such as >=2.0"),
    ('{image: "checkout-{version}-*", policy: "newest"}',
     "apps/checkout.yaml:6: automation.policy: 'newest': a policy is 'semver' and a range"),
    ('{image: "checkout-*", policy: "semver >=2"}',
     "apps/checkout.yaml:6: automation.image: 'checkout-*' must hold {version} once"),
    ('{image: {name: "checkout-{version}", tags: {v: "{version}"}}, policy: "semver >=2"}',
     "apps/checkout.yaml:6: automation.image.tags: {version} stands only in name"),
    ('{image: "checkout-{version}", policy: "semver >=2", newest: true}',
     "apps/checkout.yaml:6: automation.newest: unknown field; allowed: image, policy"),
])
def test_a_bad_automation_block_is_a_spec_problem_naming_file_line_and_field(block: str, want: str) -> None:
    text = SPEC.replace('automation:\n  image: "checkout-{version}-*"\n  policy: "semver >=2.0 <3"\n',
                        f"\n\nautomation: {block}\n")
    files = [loader.SpecFile("apps/checkout.yaml", "b1", text.encode),
             loader.SpecFile("apps/values.yaml", "b2", lambda: b'checkout:\n  version: "2.0.0"\n')]
    desired = loader.load_specs(files, spec_path="apps", commit="c0")
    assert "checkout" not in desired.applications
    assert any(str(p).startswith(want) for p in desired.problems), [str(p) for p in desired.problems]


def test_policies_and_versions() -> None:
    policy = automation.parse_policy("semver >=2.0, <3")
    auto = automation.ImageAutomation(images.ImagePattern(name="app-v{version}"), policy)
    found = [images.Image(n, n) for n in ("app-v2.4.1", "app-v2.10.0", "app-v3.0.0", "app-vnext", "other-v2.9.0")]
    assert sorted(automation.versions_in(auto, found)) == ["2.10.0", "2.4.1", "3.0.0"]
    assert automation.decide(auto, [found], "2.4.1").version == "2.10.0"  # semver order, not text order
    assert automation.decide(auto, [found], "2.11.0").version is None  # Git is ahead: never downgraded
    assert automation.decide(auto, [found, found[:1]], "2.0.0").version == "2.4.1"  # what every region has
    rc = automation.parse_policy("semver >=3.0.0-rc.1")
    assert rc.admits(automation.parse_version("3.0.0-rc.2") or pytest.fail())
    assert not policy.admits(automation.parse_version("2.5.0-rc.1") or pytest.fail())


def test_the_documented_example_loads_its_mistakes_read_as_documented_and_help_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler import cli
    from tests.environments.test_docs_example import DOC, _block_after

    example = _block_after("`apps/checkout.yaml`, with automation:")
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/values.yaml", 'checkout:\n  version: "2.0.0"\n').write("apps/checkout.yaml", example).commit()
    assert run_cli("validate", str(repo.path)).code == 0
    documented = _block_after("hold the application like any other:", "").strip().splitlines()
    for line, (old, new) in zip(documented, [
            ('policy: "semver >=2.0 <3"', 'policy: "semver >=2.0 <3 x"'),
            ('image: "checkout-{version}-*"       #', 'image: "checkout-*"       #'),
            ("version_from: checkout.version", "criticality: normal")], strict=True):
        repo.write("apps/checkout.yaml", example.replace(old, new, 1)).commit()
        res = run_cli("validate", str(repo.path))
        assert res.code != 0 and line in res.out + res.err, (line, res.out, res.err)
    assert "automation" in DOC
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "image automation commits a newer image's version" in " ".join(capsys.readouterr().out.split())


def test_the_json_schema_describes_automation_and_accepts_the_documented_example() -> None:
    import jsonschema
    import yaml

    from specs import schema
    from tests.environments.test_docs_example import _block_after

    doc = schema.json_schema()
    auto = doc["properties"]["automation"]
    assert set(auto["properties"]) == {"image", "policy"} and sorted(auto["required"]) == ["image", "policy"]
    assert auto["additionalProperties"] is False
    assert all(p.get("description") for p in [auto, *auto["properties"].values()])
    assert "newest" not in auto["properties"]["image"]["oneOf"][1]["properties"]
    example = yaml.safe_load(_block_after("`apps/checkout.yaml`, with automation:"))
    jsonschema.validate(example, doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "automation": {"image": "checkout-{version}"}}, doc)


def test_without_automation_a_poll_costs_no_spec_read_after_the_first(tmp_path: Path) -> None:
    repo = DesiredRepo(tmp_path / "desired")
    repo.write("apps/cart.yaml", app_spec("cart", regions=("us-east-1",))).commit()
    cfg = write_config(tmp_path / "config.yaml", repo.path, tmp_path / "state")
    clock = clock_mod.FakeClock()
    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock)
    try:
        assert engine.automate() == []  # nothing read yet: nothing to look at
        engine.reconcile()
        for _ in range(3):
            clock.advance(2)
            assert engine.automate() == []
        reads = engine.automator.reads
        status = engine.status()
    finally:
        engine.close()
    assert reads == 1, "one read of the commit in force, then it is known to have no automation"
    assert status["automation"] == {}


PINNED = textwrap.dedent("""\
    application: checkout
    owner: team@example.com
    version_from: checkout.version
    environments:
      - name: test
        clusters:
          - {stack: test, provider: local, account: default, regions: [us-east-1], image: "checkout-{version}",
             instance_type: m5.large, capacity: {min: 1, desired: 1, max: 1}}
      - name: prod
        depends_on: []
        version_from: checkout.prod
        automation: {image: "checkout-{version}", policy: "semver >=1.0 <2"}
        clusters:
          - {stack: prod, provider: local, account: default, regions: [us-east-1, eu-west-1],
             image: "checkout-{version}", instance_type: m5.large, capacity: {min: 1, desired: 1, max: 1}}
    """)


def test_an_environments_own_automation_writes_its_own_version_only(tmp_path: Path) -> None:
    work = DesiredRepo(tmp_path / "work")
    work.write("apps/values.yaml", 'checkout:\n  version: "2.0.0"\n  prod: "1.0.0"\n')
    work.write("apps/checkout.yaml", PINNED).commit("first")
    bare = tmp_path / "desired.git"
    pygit2.clone_repository(str(work.path), str(bare), bare=True)
    cfg = write_config(tmp_path / "config.yaml", tmp_path, tmp_path / "state", repo={"url": str(bare)},
                       providers={"local": {"accounts": {"default": {"boot_seconds": 0, "images": [
                           image("checkout-1.0.0", 1), image("checkout-1.2.0", 2), image("checkout-2.1.0", 3)]}}}})
    engine = engine_mod.Engine(config_mod.load_config(str(cfg)), clock=clock_mod.FakeClock())
    try:
        engine.reconcile()
        looks = engine.automate()
        status = engine.status()["automation"]
    finally:
        engine.close()
    assert [(x.application, x.environment, x.state, x.latest) for x in looks] == [
        ("checkout/prod", "prod", "committed", "1.2.0")], "2.1.0 is outside prod's policy; test has no automation"
    assert blob(bare, "apps/values.yaml") == 'checkout:\n  version: "2.0.0"\n  prod: "1.2.0"\n'
    assert list(status) == ["checkout/prod"] and status["checkout/prod"]["environment"] == "prod"

    text = PINNED.replace("    version_from: checkout.prod\n", "")
    files = [loader.SpecFile("apps/checkout.yaml", "b1", text.encode),
             loader.SpecFile("apps/values.yaml", "b2", lambda: b'checkout:\n  version: "2.0.0"\n')]
    problems = [str(p) for p in loader.load_specs(files, spec_path="apps", commit="c0").problems]
    assert problems == ["apps/checkout.yaml:11: environments[1].automation: automation on an environment writes "
                        "that environment's own version: add version_from (a key of values.yaml) or version to this "
                        "environment"]
