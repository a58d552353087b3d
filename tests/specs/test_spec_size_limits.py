"""No input can raise past the spec layer: nesting, sizes, tree limits, policies.yaml, control characters."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core import errors
from specs import limits, loader, schema, yamlnodes
from tests.specs.spec_helpers import Tree, lines_of, minimal


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------------------- nesting


def test_six_hundred_nested_brackets_are_a_problem_not_a_recursion_error() -> None:
    tree = Tree({"deep.yaml": minimal("deep") + "tags: " + "[" * 600 + "]" * 600 + "\n", "good.yaml": minimal("good")})

    state = tree.load()

    assert lines_of(state) == ["apps/deep.yaml:10: (file): nested more than 64 levels deep (lists and mappings "
                               "inside each other); a spec needs a handful"]
    assert list(state.applications) == ["good"]


@pytest.mark.parametrize("text", [
    "a: &a [*a]\n",                                                          # an anchor inside itself
    "- " * 200 + "x\n",                                                      # block sequences on one line
    "a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, 300)),  # merge chain
])
def test_every_kind_of_deep_document_stops_at_the_depth_limit(text: str) -> None:
    with pytest.raises(errors.SpecError, match="nested more than 64 levels deep"):
        yamlnodes.load_yaml_with_lines(text, file="f.yaml")


def test_sixty_four_levels_are_still_fine() -> None:
    value, _ = yamlnodes.load_yaml_with_lines("[" * 63 + "]" * 63, file="f.yaml")

    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    assert depth == 62


def test_deep_values_and_policy_files_are_their_own_problems() -> None:
    deep = "x: " + "[" * 100 + "]" * 100 + "\n"
    tree = Tree({"values.yaml": deep, "policies.yaml": deep, "plain.yaml": minimal("plain")})

    state = tree.load()
    _settings, policy_problems = loader.load_policies(tree.spec_files())

    assert [p.file for p in state.problems] == ["apps/values.yaml"]
    assert [(p.file, "nested more than 64" in p.message) for p in policy_problems] == [("apps/policies.yaml", True)]
    assert list(state.applications) == ["plain"]


# ---------------------------------------------------------------------------- huge documents


def test_a_huge_list_is_refused_before_validation() -> None:
    text = minimal("big") + "    load_balancers: [" + ", ".join(["lb"] * 5000) + "]\n"

    assert lines_of(Tree({"big.yaml": text}).load()) == [
        "apps/big.yaml:10: clusters[0].load_balancers: 5,000 items, more than the 1,000 allowed"]


def test_a_document_with_too_many_values_is_refused_before_validation() -> None:
    clusters = "".join(f"  - {{stack: s{i}, provider: local, account: a, regions: [r-1], image: i, "
                       f"instance_type: t, capacity: {{min: 1, desired: 1, max: 1}}}}\n" for i in range(900))
    text = "application: many\nowner: o@example.com\nclusters:\n" + clusters * 3

    (problem,) = Tree({"many.yaml": text}).load().problems
    assert problem.message.startswith("holds ") and "more than the 20,000 one file may have" in problem.message


def test_thousands_of_errors_in_one_file_are_counted_after_the_first_hundred() -> None:
    clusters = "".join(f"  - {{stack: s{i}, bogus: 1}}\n" for i in range(600))
    problems = Tree({"bad.yaml": f"application: bad\nowner: o@example.com\nclusters:\n{clusters}"}).load().problems

    assert len(problems) == loader.MAX_PROBLEMS_PER_FILE + 1
    assert problems[-1].message.startswith("... and ") and problems[-1].message.endswith("more problems in this file")


def test_long_durations_and_capacities_are_refused() -> None:
    text = minimal("shop", "health: {timeout: 99999999999999999999999d}", capacity="{min: 1, desired: 1, max: 10**9}")
    text = text.replace("max: 10**9", "max: 1000000000")

    assert lines_of(Tree({"shop.yaml": text}).load()) == [
        "apps/shop.yaml:9: clusters[0].capacity.max: max value is 1000000",
        "apps/shop.yaml:10: clusters[0].health.timeout: must be at most 365d",
    ]


# ---------------------------------------------------------------------------- control characters


@pytest.mark.parametrize(("field", "value"), [
    ("image", '"img-1\\nPlan: 0 to create"'),
    ("image", '"img\\u001b[31m"'),
    ("instance_type", '"m5\\u202elarge"'),
    ("account", '"prod\\rx"'),
    ("tags", '{team: "web\\nPlan: 0 to create"}'),
    ("load_balancers", '["lb\\u0000"]'),
    ("security_groups", '["sg\\u2028x"]'),
])
def test_control_characters_in_names_images_and_tags_are_refused(field: str, value: str) -> None:
    fields = {"account": "default", "image": "img-1", "instance_type": "small", field: value}
    text = ("application: shop\nowner: o@example.com\nclusters:\n  - provider: local\n    regions: [local-1]\n"
            "    capacity: {min: 1, desired: 1, max: 1}\n" + "".join(f"    {k}: {v}\n" for k, v in fields.items()))

    found = Tree({"shop.yaml": text}).load().problems

    assert len(found) == 1, found
    assert found[0].field.startswith(f"clusters[0].{field}")
    assert found[0].message.startswith("must not contain control characters (found ")
    assert "\n" not in str(found[0]) and "\x1b" not in str(found[0])


@pytest.mark.parametrize("name", ['"shop\\n"', '"shop\\nx"'])
def test_a_pattern_must_match_the_whole_value(name: str) -> None:
    text = minimal("shop").replace("application: shop", f"application: {name}")

    (problem,) = Tree({"shop.yaml": text}).load().problems
    assert problem.field == "application" and "lowercase letters and digits" in problem.message


def test_user_data_may_hold_any_text() -> None:
    state = Tree({"shop.yaml": minimal("shop", 'user_data: "#!/bin/sh\\n\\techo \\u001b ok\\n"')}).load()

    assert state.problems == ()


def test_a_problem_line_shows_control_characters_as_escapes() -> None:
    tree = Tree({"a\nPlan: 0 to create.yaml": "application: [\n"})

    (line,) = lines_of(tree.load())
    assert line.startswith("apps/a\\nPlan: 0 to create.yaml:")
    assert "\n" not in line


def test_the_json_schema_says_names_must_be_printable() -> None:
    cluster = schema.json_schema()["properties"]["clusters"]["items"]["properties"]

    image = cluster["image"]["oneOf"][0]  # the id; the other branch is a pattern resolved per region
    assert image["pattern"].startswith("^[^\\u0000-\\u001f")
    assert image["maxLength"] == 1024
    assert cluster["tags"]["maxProperties"] == 100
    assert cluster["regions"]["maxItems"] == 100


# ---------------------------------------------------------------------------- whole trees


def test_validate_dir_refuses_a_tree_with_too_many_files_and_says_how_many(tmp_path: Path) -> None:
    for i in range(6):
        write(tmp_path / "apps" / f"app{i}.yaml", minimal(f"app{i}"))
    write(tmp_path / "apps" / "notes.txt", "counted too\n")

    state = loader.load_directory(tmp_path, limits=limits.SpecLimits(max_files=5))

    assert lines_of(state) == ["apps:1: (file): apps/ holds 7 files, more than the limit of 5 (specs.max_files); "
                               "none of it is loaded"]
    assert state.applications == {} and state.broken_files == {"apps"}


def test_validate_dir_refuses_a_tree_over_the_byte_limit(tmp_path: Path) -> None:
    write(tmp_path / "apps" / "a.yaml", minimal("a") + "#" * 3000 + "\n")

    state = loader.load_directory(tmp_path, limits=limits.SpecLimits(max_total_bytes=2048))

    assert lines_of(state)[0].startswith("apps:1: (file): apps/ holds 3.1 KiB of files, more than the limit of "
                                         "2 KiB (specs.max_total_size)")


def test_load_specs_itself_refuses_too_many_files() -> None:
    tree = Tree({f"app{i}.yaml": minimal(f"app{i}") for i in range(4)})

    state = loader.load_specs(tree.spec_files(), limits=limits.SpecLimits(max_files=3))

    assert [p.file for p in state.problems] == ["apps"] and state.applications == {}


# ---------------------------------------------------------------------------- policies.yaml


def test_policies_yaml_has_the_spec_size_limit_and_must_be_utf8() -> None:
    big = Tree({"policies.yaml": "# " + "x" * limits.MAX_FILE_BYTES + "\n"})
    latin = Tree({"policies.yaml": b"defaults: {}\n# caf\xe9\n"})

    big_settings, big_problems = loader.load_policies(big.spec_files())
    _latin_settings, latin_problems = loader.load_policies(latin.spec_files())

    assert [str(p) for p in big_problems] == [
        "apps/policies.yaml:1: (file): file is larger than 1024 KiB; not parsed (split it up)"]
    assert big_settings.problems == tuple(big_problems), "a broken policy file holds changes"
    assert [str(p) for p in latin_problems] == [
        "apps/policies.yaml:1: (file): not UTF-8 text (invalid continuation byte at byte 18)"]


def test_policies_yaml_is_parsed_once_per_blob() -> None:
    tree = Tree({"policies.yaml": "defaults: {blast_radius: {max_clusters: 7}}\n"})
    cache = loader.SpecCache()

    first, _ = loader.load_policies(tree.spec_files(), cache=cache)
    second, _ = loader.load_policies(tree.spec_files(), cache=cache)
    tree.put("policies.yaml", "defaults: {blast_radius: {max_clusters: 8}}\n")
    third, _ = loader.load_policies(tree.spec_files(), cache=cache)

    assert cache.policy_parses == 2 and tree.reads["apps/policies.yaml"] == 2
    assert first is second
    assert third.global_settings()["blast_radius"]["max_clusters"] == 8


def test_a_policy_mapping_larger_than_any_fleet_is_refused() -> None:
    text = "clusters: {" + ", ".join(f"c{i}: {{}}" for i in range(20_001)) + "}\n"

    _settings, problems = loader.load_policies(Tree({"policies.yaml": text}).spec_files())

    assert [str(p) for p in problems] == ["apps/policies.yaml:1: clusters: 20,001 items, more than the 20,000 allowed"]


# ---------------------------------------------------------------------------- the config section


def test_the_specs_config_section_parses_units_and_defaults() -> None:
    parsed = limits.from_config({"render_timeout": "500ms", "render_memory": "128MiB", "max_files": 100,
                                 "max_total_size": "1GiB"}, where="c.yaml: specs")

    assert parsed == limits.SpecLimits(render_timeout_s=0.5, render_memory_bytes=128 * 1024 * 1024, max_files=100,
                                       max_total_bytes=1024**3)
    assert limits.from_config(None, where="c") == limits.SpecLimits()


@pytest.mark.parametrize(("section", "message"), [
    ({"render_timeout": "soon"}, "c.yaml: specs.render_timeout: 'soon' is not a duration"),
    ({"render_timeout": "0s"}, "c.yaml: specs.render_timeout: must be between 10ms and 10m"),
    ({"render_memory": "lots"}, "c.yaml: specs.render_memory: 'lots' is not a size"),
    ({"render_memory": "1MiB"}, "c.yaml: specs.render_memory: must be between 16MiB and 64GiB, got 1 MiB"),
    ({"max_files": "many"}, "c.yaml: specs.max_files: expected a whole number"),
    ({"max_files": 0}, "c.yaml: specs.max_files: expected a whole number"),
    ({"max_total_size": -1}, "c.yaml: specs.max_total_size: a size cannot be negative"),
    ({"render_timout": "2s"}, "c.yaml: specs.render_timout: unknown field; allowed: render_timeout"),
    ("fast", "c.yaml: specs: expected a mapping"),
])
def test_a_bad_specs_section_names_the_field(section: object, message: str) -> None:
    with pytest.raises(errors.ConfigError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        limits.from_config(section, where="c.yaml: specs")


DOCS = Path(__file__).resolve().parents[2]


def test_the_documented_specs_section_loads_as_written_and_states_the_defaults(tmp_path: Path) -> None:
    from reconciler.config import settings as config_mod

    section = (DOCS / "docs" / "security.md").read_text(encoding="utf-8").split("### Configuration", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    readme = (DOCS / "README.md").read_text(encoding="utf-8").split("### Configuration", 1)[1]
    readme_block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]

    for text in (block, readme_block):
        path = write(tmp_path / "config.yaml", text)
        assert config_mod.load_config(path).specs == limits.SpecLimits()
