"""load_yaml_with_lines: safe values, a line for every path, and the YAML mistakes PyYAML lets through."""

from __future__ import annotations

import pytest

from reconciler.core import errors
from specs import yamlnodes
from tests.specs.spec_helpers import Tree, lines_of, minimal


def problems(text: str) -> list[str]:
    with pytest.raises(errors.SpecError) as caught:
        yamlnodes.load_yaml_with_lines(text, file="f.yaml")
    return [str(p) for p in caught.value.problems]


def test_values_and_a_line_for_every_key_and_item() -> None:
    value, lines = yamlnodes.load_yaml_with_lines("a: 1\nb:\n  c:\n    - x\n    - {d: true}\n", file="f.yaml")

    assert value == {"a": 1, "b": {"c": ["x", {"d": True}]}}
    assert lines == {"": 1, "a": 1, "b": 2, "b.c": 3, "b.c[0]": 4, "b.c[1]": 5, "b.c[1].d": 5}


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    _, lines = yamlnodes.load_yaml_with_lines("a:\n  b:\n    c: 1\n", file="f.yaml")

    assert yamlnodes.line_of(lines, "a.b.c") == 3
    assert yamlnodes.line_of(lines, "a.b.missing") == 2
    assert yamlnodes.line_of(lines, "a.b[3].x") == 2
    assert yamlnodes.line_of(lines, "zzz") == 1


def test_an_empty_document_is_none() -> None:
    assert yamlnodes.load_yaml_with_lines("# nothing\n", file="f.yaml") == (None, {})


def test_duplicate_keys_are_errors_with_both_lines_at_every_depth() -> None:
    assert problems("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n") == [
        "f.yaml:4: b.c: duplicate key (first at line 3)",
        "f.yaml:5: a: duplicate key (first at line 1)",
    ]


def test_a_syntax_error_reports_the_yaml_mark_line() -> None:
    assert problems("a: 1\nb: [1, 2\nc: 3\n") == ["f.yaml:3: (file): not valid YAML: did not find expected ',' or ']'"]


def test_a_tab_indent_is_a_syntax_error_on_its_line() -> None:
    found = problems("a:\n\tb: 1\n")

    assert len(found) == 1
    assert found[0].startswith("f.yaml:2: (file): not valid YAML: found character")


def test_several_documents_in_one_file_are_refused() -> None:
    assert problems("a: 1\n---\nb: 2\n") == ["f.yaml:3: (file): one YAML document per file, found several"]


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system [echo hi]",
    "!!python/name:os.system",
    "!custom thing",
])
def test_unsafe_and_unknown_tags_are_refused_not_constructed(tagged: str) -> None:
    found = problems(f"a: 1\nb: {tagged}\n")

    assert len(found) == 1
    assert found[0].startswith("f.yaml:2: b: not allowed in a spec: ")
    assert "tag" in found[0]


def test_tagged_collections_are_refused() -> None:
    assert problems("a: !!set {x, y}\nb: !!omap [x: 1]\n") == [
        "f.yaml:1: a: not allowed in a spec: the tag 'tag:yaml.org,2002:set' (only plain YAML)",
        "f.yaml:2: b: not allowed in a spec: the tag 'tag:yaml.org,2002:omap' (only plain YAML)",
    ]


def test_complex_keys_are_refused() -> None:
    assert problems("? [a, b]\n: 1\n") == ["f.yaml:1: (file): mapping keys must be plain scalars"]


def test_merge_keys_work_and_explicit_keys_override_them() -> None:
    text = "defaults: &d\n  image: base\n  size: 1\nweb:\n  <<: *d\n  size: 3\n"

    value, lines = yamlnodes.load_yaml_with_lines(text, file="f.yaml")

    assert value["web"] == {"image": "base", "size": 3}
    assert (lines["web.size"], lines["web.image"]) == (6, 2)


def test_a_list_of_merges_prefers_the_earlier_source() -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n"

    value, _ = yamlnodes.load_yaml_with_lines(text, file="f.yaml")

    assert value["c"] == {"x": 1, "y": 2}


def test_merging_a_scalar_is_an_error() -> None:
    assert problems("a: &a 1\nb:\n  <<: *a\n") == [
        "f.yaml:1: b: a merge key (<<) needs a mapping or a list of mappings"]


def test_an_alias_bomb_fails_fast() -> None:
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]

    assert problems("\n".join(levels) + "\n") == [
        f"f.yaml:1: (file): the document expands to more than {yamlnodes.MAX_NODES:,} values (aliases?)"]


def test_specs_can_share_settings_with_anchors() -> None:
    text = minimal("shop", "strategy: &s {keep_disabled: 3}") + \
        "  - provider: local\n    account: default\n    stack: two\n    regions: [local-1]\n" \
        "    image: img\n    instance_type: small\n    capacity: {min: 1, desired: 1, max: 1}\n" \
        "    strategy: *s\n"

    state = Tree({"shop.yaml": text}).load()

    assert state.problems == ()
    assert [c.strategy.keep_disabled for c in state.applications["shop"].clusters] == [3, 3]


def test_yaml_problems_in_specs_name_the_spec_file() -> None:
    state = Tree({"shop.yaml": minimal("shop") + "    image: again\n"}).load()

    assert lines_of(state) == ["apps/shop.yaml:10: clusters[0].image: duplicate key (first at line 7)"]
