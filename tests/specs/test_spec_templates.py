"""Rendering: values, strict undefined names, the sandbox, no file access, and size guards."""

from __future__ import annotations

import pytest

from tests.specs.spec_helpers import Tree, lines_of, minimal


def render_problems(template_line: str, values: str | None = None) -> list[str]:
    text = minimal("shop") + template_line + "\n"
    tree = Tree({"shop.yaml": text})
    if values is not None:
        tree.put("values.yaml", values)
    return lines_of(tree.load())


def test_values_render_into_any_field() -> None:
    text = minimal("shop", "tags: {% for k, v in values.tags.items() %}{{ '{' if loop.first }}{{ k }}: {{ v }}"
                           "{{ ', ' if not loop.last else '}' }}{% endfor %}").replace(
        "img-1", "{{ values.image }}")
    tree = Tree({"shop.yaml": text, "values.yaml": "image: ami-9\ntags: {team: web, tier: front}\n"})

    state = tree.load()

    assert state.problems == ()
    launch = state.applications["shop"].clusters[0].launch
    assert (launch.image, launch.tags) == ("ami-9", (("team", "web"), ("tier", "front")))


def test_an_undefined_value_names_the_template_line() -> None:
    assert render_problems("# {{ values.missing }}") == [
        "apps/shop.yaml:10: (file): template: 'dict object' has no attribute 'missing'"]


def test_an_undefined_name_outside_values_is_an_error_too() -> None:
    assert render_problems("# {{ image }}") == ["apps/shop.yaml:10: (file): template: 'image' is undefined"]


def test_a_template_syntax_error_names_its_line() -> None:
    assert render_problems("# {% if values %}") == [
        "apps/shop.yaml:10: (file): template syntax error: Unexpected end of template. Jinja was looking for the "
        "following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'."]


def test_a_runtime_error_in_a_template_is_the_files_problem() -> None:
    assert render_problems("# {{ 1 // 0 }}") == [
        "apps/shop.yaml:10: (file): template error: ZeroDivisionError: integer division or modulo by zero"]


@pytest.mark.parametrize("trick", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ values.__class__ }}",
    "{{ (1).__class__.__base__ }}",
    "{{ lipsum.__globals__ }}",
])
def test_the_sandbox_blocks_attribute_tricks(trick: str) -> None:
    found = render_problems(f"# {trick}", values="a: 1\n")

    assert len(found) == 1
    assert found[0].startswith("apps/shop.yaml:10: (file): template refused by the sandbox: access to attribute")
    assert "is unsafe" in found[0]


@pytest.mark.parametrize("statement", [
    "{% include 'values.yaml' %}",
    "{% include '../../etc/passwd' %}",
    "{% import 'macros.j2' as m %}",
    "{% from 'macros.j2' import x %}",
    "{% extends 'base.j2' %}",
])
def test_templates_cannot_read_other_files(statement: str) -> None:
    tree = Tree({"shop.yaml": minimal("shop") + statement + "\n", "macros.j2": "{% macro x() %}{% endmacro %}",
                 "base.j2": "application: other\n"})

    assert lines_of(tree.load()) == [
        "apps/shop.yaml:10: (file): template error: include, import and extends are not available in specs"]


def test_huge_repetition_is_refused_before_it_is_built() -> None:
    assert render_problems("# {{ 'x' * 100000000 }}") == [
        "apps/shop.yaml:10: (file): template refused by the sandbox: '*' would build 100,000,000 items"]


def test_huge_powers_are_refused() -> None:
    assert render_problems("# {{ 10 ** 100000 }}") == [
        "apps/shop.yaml:10: (file): template refused by the sandbox: '**' result too large (10 ** 100000)"]


def test_small_arithmetic_still_works() -> None:
    text = minimal("shop", capacity="{min: {{ 2 ** 1 }}, desired: {{ 2 * 2 }}, max: {{ ([1] * 3) | length * 3 }}}")

    state = Tree({"shop.yaml": text}).load()

    assert state.problems == ()
    assert state.applications["shop"].clusters[0].capacity.as_dict() == {"min": 2, "desired": 4, "max": 9}


def test_runaway_output_stops_at_the_render_limit() -> None:
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}0123456789abcdef{% endfor %}{% endfor %}"

    assert render_problems(f"# {loop}") == ["apps/shop.yaml:1: (file): template renders to more than 4 MiB"]


def test_runaway_recursion_is_the_files_problem() -> None:
    assert render_problems("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}") == [
        "apps/shop.yaml:10: (file): template error: recursion too deep"]


def test_a_template_problem_in_one_file_leaves_the_others_loading() -> None:
    tree = Tree({"bad.yaml": minimal("bad") + "{{ nope }}\n", "good.yaml": minimal("good")})

    state = tree.load()

    assert list(state.applications) == ["good"]
    assert state.broken_files == {"apps/bad.yaml"}
