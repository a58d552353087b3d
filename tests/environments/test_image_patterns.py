"""Images by pattern on the local provider: resolved per region from the configured images, through the CLI."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from specs import schema
from tests.conftest import Env, write_config


def spec(image: str, *, regions: str = "[us-east-1, eu-west-1]", version: str = "1.4.2") -> str:
    return textwrap.dedent(f"""\
        application: checkout
        owner: team@example.com
        version: "{version}"
        clusters:
          - stack: main
            provider: local
            account: default
            regions: {regions}
            image: {image}
            instance_type: m5.large
            capacity: {{min: 1, desired: 1, max: 2}}
        """)


def configure(env: Env, images: list[Any]) -> None:  # raw config entries, wrong ones included
    write_config(env.config, env.repo.path, env.state_dir, providers={"local": {"accounts": {"default": {
        "boot_seconds": 0, "images": images}}}})


def plan(env: Env) -> dict[str, Any]:
    res = env.cli("plan", "--format", "json")
    assert res.code in (1, 2), res.err
    return dict(json.loads(res.out))


def test_each_region_runs_the_newest_image_it_has_and_keeps_it(env: Env) -> None:
    configure(env, [{"name": "checkout-1.4.2-a", "created": 10}, {"name": "checkout-1.4.2-b", "created": 20,
                                                                   "regions": ["us-east-1"]},
                    {"name": "checkout-1.4.3-a", "created": 30}])
    env.repo.write("apps/checkout.yaml", spec('{name: "checkout-{version}-*", newest: true}')).commit("1.4.2")

    p = plan(env)
    images = {c["region"]: c["desired"]["image"] for c in p["changes"]}
    assert images == {"us-east-1": "checkout-1.4.2-b", "eu-west-1": "checkout-1.4.2-a"}
    assert p["problems"] == []
    assert all(c["image_resolution"]["pattern"] == {"name": "checkout-1.4.2-*", "newest": True}
               for c in p["changes"])

    res = env.cli("apply", "--yes")
    assert res.code == 0, res.out + res.err
    assert {g["region"]: g["image"] for g in env.groups()} == images
    assert plan_code(env) == 0, "a second plan is empty: each region keeps its own image (and its own spec hash)"


def plan_code(env: Env) -> int:
    return env.cli("plan").code


def test_a_region_without_a_match_is_a_spec_problem_and_only_it_waits(env: Env) -> None:
    configure(env, [{"name": "checkout-1.4.2-a", "regions": ["us-east-1"]}])
    env.repo.write("apps/checkout.yaml", spec('{name: "checkout-{version}-*"}')).commit("1.4.2")

    res = env.cli("apply", "--yes")
    assert res.code == 0, "what may run ran; the problem is reported"
    assert ("apps/checkout.yaml:9: clusters[0].image: local/default/eu-west-1: no image matches name "
            "checkout-1.4.2-*; checkout-main is held in eu-west-1 (its other regions deploy)") in res.out + res.err
    assert [(g["region"], g["image"]) for g in env.groups()] == [("us-east-1", "checkout-1.4.2-a")]
    status = env.status()
    assert any("eu-west-1: no image matches" in p for p in status["problems"])
    conditions = status["applications"]["checkout"]["conditions"]
    assert any(c["type"] == "Stalled" and "eu-west-1" in c["message"] for c in conditions)


def test_several_matches_without_newest_name_them(env: Env) -> None:
    configure(env, [{"name": "checkout-1.4.2-a"}, {"name": "checkout-1.4.2-b"}])
    env.repo.write("apps/checkout.yaml", spec('{name: "checkout-{version}-*"}', regions="[us-east-1]")).commit()

    (problem,) = plan(env)["problems"]
    assert problem["message"] == (
        "local/default/us-east-1: 2 images match name checkout-1.4.2-*: checkout-1.4.2-b (checkout-1.4.2-b), "
        "checkout-1.4.2-a (checkout-1.4.2-a); set newest: true to take the newest, or narrow the pattern; "
        "checkout-main is held in us-east-1 (its other regions deploy)")


def test_tags_and_family_narrow_the_match(env: Env) -> None:
    configure(env, [{"name": "checkout-1.4.2-a", "tags": {"stage": "baked"}, "family": "checkout"},
                    {"name": "checkout-1.4.2-b", "tags": {"stage": "draft"}, "family": "checkout"},
                    {"name": "other-1", "tags": {"stage": "baked"}}])
    env.repo.write("apps/checkout.yaml", spec('{family: checkout, tags: {stage: baked}}',
                                              regions="[us-east-1]")).commit()

    (change,) = plan(env)["changes"]
    assert change["desired"]["image"] == "checkout-1.4.2-a"


def test_the_offline_preview_shows_the_pattern_and_the_version_change(env: Env) -> None:
    configure(env, [])
    env.repo.write("apps/checkout.yaml", spec('{name: "checkout-{version}-*", newest: true}')).commit("1.4.2")
    env.repo.write("apps/checkout.yaml", spec('{name: "checkout-{version}-*", newest: true}', version="1.4.3"))
    env.repo.commit("1.4.3")

    res = env.cli("plan", "--ref", "main", "--base", "main~1", "--format", "json")
    assert res.code == 2, res.err
    p = json.loads(res.out)
    assert {(c["region"], c["action"], c["desired"]["image"]) for c in p["changes"]} == {
        ("us-east-1", "replace", "name checkout-1.4.3-*"), ("eu-west-1", "replace", "name checkout-1.4.3-*")}
    assert p["problems"] == [], "no cloud is asked: nothing is unresolved"


def test_pattern_mistakes_are_spec_problems_with_their_field(env: Env) -> None:
    env.repo.write("apps/a.yaml", spec("{newest: true}").replace("checkout", "a"))
    env.repo.write("apps/b.yaml", spec('{name: "b-*", owners: [bob]}').replace("checkout", "b"))
    env.repo.write("apps/c.yaml", spec('{name: "c-{version}-*"}').replace("checkout", "c").replace(
        'version: "1.4.2"\n', ""))
    env.repo.commit("broken")

    res = env.cli("validate", str(env.repo.path))
    assert res.code == 1
    assert "apps/a.yaml:9: clusters[0].image: an image pattern needs name, tags or family" in res.out
    assert "apps/b.yaml:9: clusters[0].image.owners[0]:" in res.out
    assert "apps/c.yaml:8: clusters[0].image: {version} needs a version" in res.out


def test_the_local_image_list_is_checked_at_load(env: Env) -> None:
    configure(env, [{"nme": "x"}, "y"])
    res = env.cli("plan")
    assert res.code == 1
    assert "providers.local.accounts.default.images[0].nme: unknown field" in res.err
    assert "providers.local.accounts.default.images[0].name: required" in res.err
    assert "providers.local.accounts.default.images[1]: expected a mapping" in res.err


def test_the_json_schema_offers_an_id_or_a_pattern() -> None:
    image = schema.json_schema()["properties"]["clusters"]["items"]["properties"]["image"]
    text, pattern = image["oneOf"]
    assert text["type"] == "string"
    assert set(pattern["properties"]) == {"name", "tags", "owners", "family", "project", "newest"}
    assert pattern["anyOf"] == [{"required": ["name"]}, {"required": ["tags"]}, {"required": ["family"]}]
    assert all(p.get("description") for p in pattern["properties"].values())


def test_a_cloud_error_while_listing_images_holds_that_region_with_the_error(env: Env) -> None:
    write_config(env.config, env.repo.path, env.state_dir, providers={"local": {"accounts": {"default": {
        "images": [{"name": "checkout-1.4.2-a"}], "faults": {"rate": 1.0, "calls": ["images"],
                                                             "kinds": ["throttled"]}}}}})
    env.repo.write("apps/checkout.yaml", spec('{name: "checkout-{version}-*"}', regions="[us-east-1]")).commit()

    p = plan(env)
    assert p["changes"] == []
    (problem,) = p["problems"]
    assert problem["message"].startswith("local/default/us-east-1: cannot list images: local/default/us-east-1 "
                                         "images: throttled: rate exceeded (injected)")
