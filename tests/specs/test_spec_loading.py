"""Loading a spec tree: model values, defaults, all problems at once, broken files isolated, the blob cache."""

from __future__ import annotations

from reconciler.core import model
from specs import loader
from tests.specs.spec_helpers import VALID, Tree, lines_of, minimal


def test_a_full_spec_becomes_model_values() -> None:
    state = Tree({"checkout.yaml": VALID, "values.yaml": "checkout_image: ami-0123\n"}).load(commit="abc")

    assert state.problems == ()
    assert state.commit == "abc"
    app = state.applications["checkout"]
    assert (app.owner, app.criticality, app.source) == (
        "payments@example.com", model.Criticality.CRITICAL, model.SourceRef("apps/checkout.yaml", 1))
    full, bare = app.clusters
    assert full == model.ClusterSpec(
        application="checkout",
        stack="main",
        detail="blue",
        provider="aws",
        account="prod",
        regions=("us-east-1", "eu-west-1"),
        launch=model.LaunchSpec(
            image="ami-0123",
            instance_type="m5.large",
            user_data="#!/bin/sh\necho hi\n",
            security_groups=("checkout", "base"),
            load_balancers=("checkout-web",),
            tags=(("cost", "42"), ("pci", "true"), ("team", "payments")),
        ),
        capacity=model.Capacity(2, 3, 6),
        autoscaling=True,
        health=model.HealthSpec(healthy_percent=75, timeout_s=900.0),
        strategy=model.Strategy(keep_disabled=2, scale_down=False, delay_before_disable_s=30.0,
                                delay_before_scale_down_s=3600.0, rollback_on_failure=False),
        rollout=model.Rollout(waves=(("us-east-1",), ("eu-west-1",)), pause_s=90.0),
        source=model.SourceRef("apps/checkout.yaml", 5),
    )
    assert full.name == "checkout-main-blue"
    assert bare.source == model.SourceRef("apps/checkout.yaml", 23)


def test_omitted_fields_take_the_documented_defaults() -> None:
    state = Tree({"shop.yaml": minimal()}).load()

    app = state.applications["shop"]
    assert app.criticality is model.Criticality.NORMAL
    (cluster,) = app.clusters
    assert (cluster.stack, cluster.detail, cluster.autoscaling) == ("", "", False)
    assert cluster.launch == model.LaunchSpec(image="img-1", instance_type="small")
    assert cluster.health == model.HealthSpec(healthy_percent=100, timeout_s=600.0)
    assert cluster.strategy == model.Strategy(keep_disabled=1, scale_down=True, delay_before_disable_s=0.0,
                                              delay_before_scale_down_s=0.0, rollback_on_failure=True)
    assert cluster.rollout == model.Rollout(waves=(), pause_s=0.0)


def test_every_problem_of_every_file_is_reported_at_once_with_its_line() -> None:
    tree = Tree({
        "a.yaml": minimal("alpha", "health: {healthy_percent: 0}", capacity="{min: 3, desired: 1, max: 2}"),
        "b.yaml": minimal("beta", "strategy: {keep_disabled: -1, delay_before_disable: soon}"),
        "c.yaml": minimal("gamma"),
    })

    state = tree.load()

    assert lines_of(state) == [
        "apps/a.yaml:9: clusters[0].capacity: needs min <= desired <= max, got min 3, desired 1, max 2",
        "apps/a.yaml:10: clusters[0].health.healthy_percent: min value is 1",
        "apps/b.yaml:10: clusters[0].strategy.delay_before_disable: must be a duration like 30s, 10m or 1h",
        "apps/b.yaml:10: clusters[0].strategy.keep_disabled: must be 0 or more",
    ]
    assert state.broken_files == {"apps/a.yaml", "apps/b.yaml"}
    assert list(state.applications) == ["gamma"]


def test_line_numbers_point_at_the_offending_key_deep_in_the_tree() -> None:
    text = minimal("deep", """
        strategy:
          type: red_black
          keep_disabled: 1
          scale_down: maybe
        rollout:
          waves:
            - [local-1]
            - [elsewhere]
        """).replace("capacity: {min: 1, desired: 1, max: 2}", "capacity:\n      min: 1\n      desired: 1\n"
                     "      max: -2")

    state = Tree({"deep.yaml": text}).load()

    assert lines_of(state) == [
        "apps/deep.yaml:12: clusters[0].capacity.max: must be 0 or more",
        "apps/deep.yaml:16: clusters[0].strategy.scale_down: must be of boolean type",
        "apps/deep.yaml:18: clusters[0].rollout.waves: waves must cover exactly the regions, each once "
        "(not in regions: elsewhere)",
    ]


def test_a_missing_required_field_is_reported_at_its_parent() -> None:
    text = minimal("shop").replace("    image: img-1\n", "")

    state = Tree({"shop.yaml": text}).load()

    assert lines_of(state) == ["apps/shop.yaml:4: clusters[0].image: required field"]


def test_unknown_fields_are_rejected_with_the_allowed_ones_listed() -> None:
    text = minimal("shop", "healthcheck: {path: /}\nhealth: {timout: 5m}").replace("owner:", "ownr: x\nowner:")

    state = Tree({"shop.yaml": text}).load()

    assert lines_of(state) == [
        "apps/shop.yaml:2: ownr: unknown field; allowed: application, automation, clusters, criticality, depends_on, "
        "environments, load_balancers, owner, security_groups, version, version_from",
        "apps/shop.yaml:11: clusters[0].healthcheck: unknown field; allowed: account, autoscaling, capacity, "
        "detail, health, image, instance_type, load_balancers, provider, regions, rollout, security_groups, "
        "stack, strategy, tags, user_data",
        "apps/shop.yaml:12: clusters[0].health.timout: unknown field; allowed: healthy_percent, timeout",
    ]


def test_the_same_application_in_two_files_is_an_error_naming_both() -> None:
    state = Tree({"one.yaml": minimal("shop"), "two.yaml": minimal("shop"), "other.yaml": minimal("other")}).load()

    assert lines_of(state) == [
        "apps/one.yaml:1: application: application 'shop' is also defined in apps/two.yaml",
        "apps/two.yaml:1: application: application 'shop' is already defined in apps/one.yaml",
    ]
    assert state.broken_files == {"apps/one.yaml", "apps/two.yaml"}
    assert list(state.applications) == ["other"]


def test_the_same_application_in_three_files_names_each_later_file() -> None:
    state = Tree({f"{n}.yaml": minimal("shop") for n in ("a", "b", "c")}).load()

    assert lines_of(state) == [
        "apps/a.yaml:1: application: application 'shop' is also defined in apps/b.yaml",
        "apps/b.yaml:1: application: application 'shop' is already defined in apps/a.yaml",
        "apps/c.yaml:1: application: application 'shop' is already defined in apps/a.yaml",
    ]
    assert state.applications == {}


def test_a_document_that_is_not_a_mapping_is_an_error() -> None:
    state = Tree({"list.yaml": "- application: shop\n", "empty.yaml": "# nothing yet\n", "str.yaml": "shop\n"}).load()

    assert lines_of(state) == [
        "apps/empty.yaml:1: (file): a spec must be a mapping with an application, got empty",
        "apps/list.yaml:1: (file): a spec must be a mapping with an application, got list",
        "apps/str.yaml:1: (file): a spec must be a mapping with an application, got str",
    ]


def test_an_oversize_file_is_refused_without_parsing() -> None:
    big = minimal("big") + "# " + "x" * loader.MAX_FILE_BYTES + "\n"
    state = Tree({"big.yaml": big, "ok.yaml": minimal("ok")}).load()

    assert lines_of(state) == ["apps/big.yaml:1: (file): file is larger than 1024 KiB; not parsed (split it up)"]
    assert list(state.applications) == ["ok"]


def test_a_file_that_is_not_utf8_is_an_error() -> None:
    text = minimal("shop").encode()
    state = Tree({"latin.yaml": text + b"# caf\xe9\n"}).load()

    assert lines_of(state) == [
        f"apps/latin.yaml:1: (file): not UTF-8 text (invalid continuation byte at byte {len(text) + 5})"]


def test_non_yaml_files_and_the_reserved_root_files_are_not_specs() -> None:
    tree = Tree({
        "shop.yaml": minimal("shop"),
        "team/web.yml": minimal("web"),
        "README.md": "# not a spec\n",
        "policies.yaml": "anything: goes\n",
        "values.yaml": "unused: 1\n",
    })

    state = tree.load()

    assert state.problems == ()
    assert sorted(state.applications) == ["shop", "web"]


def test_an_empty_spec_path_loads_from_the_repo_root() -> None:
    files = [loader.SpecFile("shop.yaml", "b1", lambda: minimal("shop").encode()),
             loader.SpecFile("values.yaml", "b2", lambda: b"x: 1\n")]

    state = loader.load_specs(files, spec_path="")

    assert state.problems == ()
    assert list(state.applications) == ["shop"]


def test_a_broken_values_file_is_reported_and_specs_that_need_it_say_why() -> None:
    tree = Tree({
        "values.yaml": "image: [unclosed\n",
        "uses.yaml": minimal("uses").replace("img-1", "'{{ values.image }}'"),
        "plain.yaml": minimal("plain"),
    })

    state = tree.load()

    assert lines_of(state) == [
        "apps/uses.yaml:7: (file): template: 'dict object' has no attribute 'image' (values.yaml has errors)",
        "apps/values.yaml:2: (file): not valid YAML: did not find expected ',' or ']'",
    ]
    assert list(state.applications) == ["plain"]


def test_values_that_are_not_a_mapping_are_an_error() -> None:
    state = Tree({"values.yaml": "- a\n- b\n", "plain.yaml": minimal("plain")}).load()

    assert lines_of(state) == ["apps/values.yaml:1: (file): values.yaml must be a mapping of names to values"]


def test_reloading_the_same_blobs_parses_nothing() -> None:
    tree = Tree({f"app{i}.yaml": minimal(f"app{i}") for i in range(5)})
    tree.put("values.yaml", "x: 1\n")
    cache = loader.SpecCache()

    first = tree.load(cache)
    second = tree.load(cache)

    assert cache.parses == 5
    assert second.applications == first.applications
    assert sum(tree.reads.values()) == 5 + 2  # specs once; values.yaml per load (it is small and sets the key)


def test_changing_one_file_reparses_only_that_file() -> None:
    tree = Tree({f"app{i}.yaml": minimal(f"app{i}") for i in range(5)})
    cache = loader.SpecCache()
    tree.load(cache)

    tree.put("app3.yaml", minimal("app3").replace("img-1", "img-2"))
    state = tree.load(cache)

    assert cache.parses == 6
    assert tree.reads["apps/app3.yaml"] == 2
    assert state.applications["app3"].clusters[0].launch.image == "img-2"


def test_changing_values_reparses_every_file() -> None:
    tree = Tree({f"app{i}.yaml": minimal(f"app{i}") for i in range(5)})
    tree.put("values.yaml", "x: 1\n")
    cache = loader.SpecCache()
    tree.load(cache)

    tree.put("values.yaml", "x: 2\n")
    tree.load(cache)

    assert cache.parses == 10


def test_cached_problems_are_reported_again_without_parsing() -> None:
    tree = Tree({"bad.yaml": minimal("bad", "bogus: 1"), "good.yaml": minimal("good")})
    cache = loader.SpecCache()

    first = tree.load(cache)
    second = tree.load(cache)

    assert cache.parses == 2
    assert second.problems == first.problems
    assert len(second.problems) == 1
    assert second.broken_files == {"apps/bad.yaml"}


def test_the_cache_forgets_least_recently_used_results() -> None:
    tree = Tree({f"app{i}.yaml": minimal(f"app{i}") for i in range(3)})
    cache = loader.SpecCache(max_entries=2)

    tree.load(cache)
    tree.load(cache)

    assert len(cache) == 2
    assert cache.parses == 6  # three files cycling through two slots always miss


def test_parse_duration_accepts_units_and_numbers_and_names_the_field() -> None:
    assert [loader.parse_duration(v, field="f") for v in ("0s", "30s", "10m", "1h", "500ms", 45, 2.5)] == [
        0.0, 30.0, 600.0, 3600.0, 0.5, 45.0, 2.5]
    for bad in ("soon", "-1s", -3, True):
        try:
            loader.parse_duration(bad, field="health.timeout")
        except ValueError as exc:
            assert "health.timeout" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_equal_texts_of_parsed_files_are_one_object_each() -> None:
    """Every file's provider, account, regions and tags are parsed anew: the loader shares equal texts."""
    extra = "tags: {team: web, tier: front}\n"
    files = [loader.SpecFile(f"app{i}.yaml", f"b{i}", lambda i=i: minimal(f"app{i}", extra).encode())  # type: ignore[misc]
             for i in range(6)]
    state = loader.load_specs(files, spec_path="")
    assert not state.problems
    specs = [c for a in state.applications.values() for c in a.clusters]
    assert len(specs) == 6
    for where in (lambda c: c.provider, lambda c: c.account, lambda c: c.regions, lambda c: c.launch.tags,
                  lambda c: c.launch.instance_type, lambda c: c.source.fields):
        assert len({id(where(c)) for c in specs}) == 1
    assert len({id(c.application) for c in specs}) == 6
    assert dict(specs[0].launch.tags) == {"team": "web", "tier": "front"}
