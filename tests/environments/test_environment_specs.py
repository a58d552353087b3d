"""Environments and versions in specs: what loads, and every mistake named by file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler.core import model
from specs import loader

CLUSTER = """\
      - stack: {stack}
        provider: local
        account: default
        regions: [us-east-1]
        image: "shop-{{version}}"
        instance_type: m5.large
        capacity: {{min: 1, desired: 1, max: 1}}
"""


def load(tmp_path: Path, spec: str, values: str | None = None) -> tuple[list[str], model.DesiredState]:
    apps = tmp_path / "apps"
    apps.mkdir(exist_ok=True)
    (apps / "shop.yaml").write_text(textwrap.dedent(spec), encoding="utf-8")
    if values is not None:
        (apps / "values.yaml").write_text(textwrap.dedent(values), encoding="utf-8")
    state = loader.load_directory(tmp_path)
    return [str(p) for p in state.problems], state


def envs(*blocks: str) -> str:
    return "application: shop\nowner: a@example.com\nversion: \"1.2.0\"\nenvironments:\n" + "".join(blocks)


def env(name: str, *lines: str) -> str:
    head = "".join(f"    {line}\n" for line in lines)
    return f"  - name: {name}\n{head}    clusters:\n" + CLUSTER.format(stack=name)


def test_images_take_the_version_and_environments_default_to_depending_on_the_previous_one(tmp_path: Path) -> None:
    problems, state = load(tmp_path, envs(env("test"), env("prod", "soak: 1h", "approval: true")))

    assert problems == []
    app = state.applications["shop"]
    assert [(c.name, c.environment, c.launch.image) for c in app.clusters] == [
        ("shop-test", "test", "shop-1.2.0"), ("shop-prod", "prod", "shop-1.2.0")]
    test, prod = app.environments
    assert test.depends_on == () and prod.depends_on == ("test",)
    assert prod.soak_s == 3600 and prod.approval is not None and prod.approval.timeout_s == 0
    assert app.version_source is not None and app.version_source.key == "version"


def test_version_from_reads_values_yaml_and_names_where_promote_writes(tmp_path: Path) -> None:
    spec = envs(env("test")).replace('version: "1.2.0"', "version_from: shop.version")
    problems, state = load(tmp_path, spec, 'shop:\n  version: "2.0.1"\n')

    assert problems == []
    app = state.applications["shop"]
    assert app.version == "2.0.1"
    assert app.version_source == model.VersionSource("apps/values.yaml", "shop.version")


def test_each_mistake_names_its_file_line_and_field(tmp_path: Path) -> None:
    spec = envs(
        env("test", "depends_on: [prod]"),
        env("prod", "depends_on: [tset]",
            'allowed_times: [{days: [mon], from: "09:00", to: "17:00", timezone: Mars/Olympus}]'),
        env("prod"),
    )
    problems, _ = load(tmp_path, spec)

    assert problems == [
        "apps/shop.yaml:6: environments[0].depends_on[0]: a later environment: list environments in delivery order",
        "apps/shop.yaml:16: environments[1].depends_on[0]: no environment named 'tset'; earlier ones: test",
        "apps/shop.yaml:17: environments[1].allowed_times[0].timezone: unknown time zone 'Mars/Olympus'",
        "apps/shop.yaml:26: environments[2].name: environment 'prod' is defined twice (also environments[1])",
        "apps/shop.yaml:28: environments[2].clusters[0]: cluster 'shop-prod' is defined twice "
        "(also environments[1].clusters[0])",
    ]


def test_a_version_is_needed_for_environments_and_for_the_placeholder(tmp_path: Path) -> None:
    problems, _ = load(tmp_path, envs(env("test")).replace('version: "1.2.0"\n', ""))

    assert problems == [
        "apps/shop.yaml:4: environments[0]: an environment needs a version to promote: set version or "
        "version_from on the application (or on this environment)",
        "apps/shop.yaml:10: environments[0].clusters[0].image: {version} needs a version: set version or "
        "version_from on the application",
    ]


def test_bad_versions_and_values_keys_are_refused(tmp_path: Path) -> None:
    problems, _ = load(tmp_path, envs(env("test")).replace('"1.2.0"', '"1.2 beta"'))
    assert problems == ["apps/shop.yaml:3: version: must be a version such as 1.4.2 or 2026.12.01-3 "
                        "(letters, digits, '.', '_', '+', '-')"]

    spec = envs(env("test")).replace('version: "1.2.0"', "version_from: shop.version")
    problems, _ = load(tmp_path, spec, "shop:\n  version: 1.10\n")
    assert problems == ["apps/shop.yaml:3: version_from: values.yaml shop.version must be a string (quote it: "
                        "1.10 would read as the number 1.1), got float"]
    problems, _ = load(tmp_path, spec, "shop: {}\n")
    assert problems == ["apps/shop.yaml:3: version_from: values.yaml has no key shop.version"]


def test_an_application_needs_clusters_or_environments(tmp_path: Path) -> None:
    problems, _ = load(tmp_path, "application: shop\nowner: a@example.com\n")

    assert problems == ["apps/shop.yaml:1: clusters: required field (or environments, each with its clusters)"]
