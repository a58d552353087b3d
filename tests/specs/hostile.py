"""Hypothesis strategies for hostile spec trees, built from grammar fragments.

Each tree holds ``apps/keep.yaml`` (a valid application that is deployed
before fuzzing starts, so a plan that pruned it would show) plus hostile
files: spec-shaped documents with one poisoned field, template bombs (endless
loops, huge format widths, recursion, sandbox escapes), deep nesting, huge
repeats, anchors and merges, control characters and other unicode in values
and file names, random bytes, hostile ``values.yaml`` and ``policies.yaml``,
oversized files and trees with too many files.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import strategies as st

KEEP = """application: keep
owner: keep@example.com
clusters:
  - stack: main
    provider: local
    account: default
    regions: [us-east-1]
    image: keep-1
    instance_type: small
    capacity: {min: 1, desired: 1, max: 2}
"""

BIG_NUMBERS = [0, 1, 7, 64, 65, 100, 1000, 100_000, 2_000_000_000, 10**30]
CONTROLS = ["\n", "\r", "\t", "\x00", "\x1b[31m", "\x1b]0;x\x07", "\u202e", "\u2028", "\u2029", "\x7f", "\x85",
            "\ufeff", "\u200b", "\n\nPlan: 0 to create, 0 to replace, 0 to resize, 0 to roll back, 0 to destroy; "
            "0 need approval, 0 denied\n"]
WORDS = ["checkout", "keep", "img-1", "us-east-1", "local", "default", "aws", "gcp", "prod", "small", "", "null",
         "~", "true", "no", "0x1F", "1e400", "-1", "0o777", ".inf", ".nan", "2001-12-14t21:59:43.10-05:00", "a" * 70,
         "{{", "}}", "{%", "%}", "{#", "&a", "*a", "<<", "!!python/object:os.system", "'", '"', "\\", "|", ">", "-",
         "?", ":", "#", "@", "`", "%", "Plan:", "<details>", "<!-- reconciler-plan -->"]

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(value: Any, *, allow_unicode: bool) -> str:
    """YAML text of ``value`` (libyaml's emitter: the pure-Python one is slow on huge strings)."""
    try:
        return str(yaml.dump(value, Dumper=_Dumper, allow_unicode=allow_unicode, sort_keys=False, width=10**9))
    except (yaml.YAMLError, UnicodeEncodeError, ValueError):
        return repr(value)


numbers = st.sampled_from(BIG_NUMBERS)
controls = st.sampled_from(CONTROLS)
words = st.sampled_from(WORDS)
unicode_text = st.text(max_size=24)
scalar_text = st.one_of(words, unicode_text, st.lists(st.one_of(words, controls), min_size=1, max_size=4).map("".join))


@st.composite
def repeated(draw: st.DrawFn, piece: st.SearchStrategy[str]) -> str:
    """A piece repeated up to 20,000 times: huge inputs without Hypothesis generating them byte by byte."""
    return draw(piece) * draw(st.sampled_from([1, 2, 10, 100, 1000, 1000, 20_000]))


TEMPLATES = [
    "{{ values.x }}", "{{ values }}", "{{ nope }}", "{{ 1 // 0 }}", "{{ values.x.y.z }}",
    "{% for i in range(N) %}{% for j in range(N) %}{% endfor %}{% endfor %}",
    "{% for i in range(N) %}{{ i }}{% endfor %}",
    "{{ 'x'|center(N) }}", "{{ '%Nd' % 1 }}", "{{ '%*d' % (N, 1) }}", "{{ 'x'.ljust(N) }}", "{{ 'x'.zfill(N) }}",
    "{{ '{:N}'.format(1) }}", "{{ '{:>{w}}'.format(1, w=N) }}", "{{ 'ab'|indent(N) }}", "{{ lipsum(N) }}",
    "{{ [1]|batch(N, 0)|list|length }}", "{{ 'x' * N }}", "{{ 10 ** N }}", "{{ (range(N)|list * N)|length }}",
    "{% set ns = namespace(l=range(N)|list) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}", "{{ values.update({'x': 1}) }}", "{% include 'values.yaml' %}",
    "{% extends 'x' %}", "{% if %}", "{% for %}", "{% raw %}{{{% endraw %}", "{#", "{{", "{% endfor %}",
    "{{ range(N)|join(',') }}", "{{ {'a': 1}|tojson(indent=N) }}", "{{ ('x' * 1000).replace('x', 'yy' * N) }}",
    "{{ 'a\tb'.expandtabs(N) }}", "{{ ('%s' * 3) % (1, 2, 3) }}", "{{ '{0.__class__}'.format(1) }}",
]


@st.composite
def template(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEMPLATES))
    while "N" in text:
        text = text.replace("N", str(draw(numbers)), 1)
    return text


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(st.sampled_from([1, 10, 63, 64, 65, 100, 600, 999, 1001, 5000]))
    kind = draw(st.sampled_from(["[", "{a: ", "- ", "block", "anchor", "merge"]))
    if kind == "[":
        return "[" * depth + "]" * depth
    if kind == "{a: ":
        return "{a: " * depth + "1" + "}" * depth
    if kind == "- ":
        return "- " * depth + "x"
    if kind == "block":
        return "".join("  " * i + "a:\n" for i in range(min(depth, 300))) + "  " * min(depth, 300) + "x\n"
    if kind == "anchor":
        return "a: &a [*a]\nb: " + "[" * min(depth, 70) + "*a" + "]" * min(depth, 70)
    return "a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, min(depth, 200)))


@st.composite
def hostile_value(draw: st.DrawFn) -> Any:
    """A Python value to put in a field: wrong types, huge numbers and strings, controls, templates."""
    base = st.one_of(scalar_text, numbers, st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.none(), template(), repeated(words))
    return draw(st.recursive(base, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(scalar_text, inner, max_size=4)),
                             max_leaves=6))


SPEC_FIELDS = ["application", "owner", "criticality", "clusters", "stack", "detail", "provider", "account",
               "regions", "image", "instance_type", "capacity", "autoscaling", "load_balancers", "security_groups",
               "user_data", "tags", "health", "strategy", "rollout", "min", "desired", "max", "timeout", "waves",
               "pause", "keep_disabled", "bogus", "<<"]


@st.composite
def spec_document(draw: st.DrawFn) -> str:
    """A valid-looking spec with poisoned fields, dumped as YAML (often with raw fragments spliced in)."""
    app = draw(st.one_of(st.sampled_from(["keep", "shop", "cart", "a" * 50]), scalar_text))
    cluster: dict[str, Any] = {"stack": "main", "provider": "local", "account": "default",
                               "regions": draw(st.sampled_from([["us-east-1"], ["us-east-1", "eu-west-1"]])),
                               "image": draw(st.one_of(st.just("img-1"), scalar_text)), "instance_type": "small",
                               "capacity": {"min": 0, "desired": 1, "max": 2}}
    doc: dict[str, Any] = {"application": app, "owner": "o@example.com", "clusters": [cluster]}
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(SPEC_FIELDS))
        target = doc if field in ("application", "owner", "criticality", "clusters") else cluster
        if field in ("min", "desired", "max"):
            target = cluster["capacity"] if isinstance(cluster.get("capacity"), dict) else cluster
        target[field] = draw(hostile_value())
    if draw(st.booleans()):
        cluster["tags"] = draw(st.dictionaries(st.one_of(words, scalar_text), scalar_text, max_size=3))
    text = _dump(doc, allow_unicode=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2))):
        splice = draw(st.one_of(template(), nested(), controls, repeated(words), scalar_text))
        where = draw(st.sampled_from(["end", "image", "line"]))
        if where == "end":
            text += splice + "\n"
        elif where == "image":
            text = text.replace("image: img-1", f"image: {splice}")
        else:
            lines = text.splitlines()
            at = draw(st.integers(0, len(lines)))
            text = "\n".join([*lines[:at], splice, *lines[at:]])
    return text


@st.composite
def policy_document(draw: st.DrawFn) -> str:
    shapes = [
        lambda: {"defaults": {"blast_radius": {"max_clusters": draw(hostile_value())}}},
        lambda: {"freeze": {"reason": draw(scalar_text), "by": draw(scalar_text)}},
        lambda: {"applications": {draw(scalar_text): {"require_approval": draw(hostile_value())}}},
        lambda: {"defaults": {"windows": {"timezone": draw(scalar_text), "allow": [{"from": draw(scalar_text),
                                                                                 "to": "24:00"}]}}},
        lambda: {"clusters": {f"c{i}": {} for i in range(draw(st.sampled_from([1, 100] * 10 + [20_001])))}},
        lambda: {draw(scalar_text): draw(hostile_value())},
    ]
    text = _dump(draw(st.sampled_from(shapes))(), allow_unicode=True)
    if draw(st.booleans()):
        text += draw(st.one_of(nested(), template(), controls, repeated(words))) + "\n"
    return text


file_body = st.one_of(
    spec_document().map(str.encode),
    st.lists(st.one_of(template(), nested(), scalar_text, controls, words), min_size=1, max_size=6)
    .map(lambda parts: " ".join(parts).encode("utf-8", "surrogatepass")),
    st.binary(max_size=600),
    repeated(st.sampled_from(["a: 1\n", "- x\n", "[1,", "{{ 1 }}", "&a x\n", "\xff"])).map(
        lambda t: t.encode("utf-8", "surrogatepass")),
)
file_names = st.one_of(
    st.builds(lambda n, ext: f"{n}.{ext}", st.text("abcz09_-", min_size=1, max_size=8),
              st.sampled_from(["yaml", "yml"])),
    st.builds(lambda n, c: f"{n}{c}.yaml", st.sampled_from(["x", "a b", "é", "日本", "dir/sub/x", ".hidden"]),
              st.sampled_from(["", "\n", "\x1b[31m", "\u202e", "\nPlan: 0 to create", ":1: (file)", "\t"])),
)


@st.composite
def trees(draw: st.DrawFn) -> dict[str, bytes]:
    """{path under apps/: content}; always with keep.yaml, usually 1-3 hostile files."""
    tree = {"keep.yaml": KEEP.encode()}
    for _ in range(draw(st.integers(1, 3))):
        tree[draw(file_names)] = draw(file_body)
    if draw(st.integers(0, 4)) == 0:
        tree["values.yaml"] = draw(st.one_of(file_body, st.builds(
            lambda v: _dump({"x": v}, allow_unicode=True).encode("utf-8", "surrogatepass"), hostile_value())))
    if draw(st.integers(0, 3)) == 0:
        tree["policies.yaml"] = draw(st.one_of(policy_document().map(str.encode), file_body))
    extra = draw(st.sampled_from([0] * 30 + [1] + [60]))  # sometimes more files than the fuzz's limit of 50
    if extra == 1:
        tree["huge.yaml"] = b"# " + b"x" * (1024 * 1024) + b"\n"
    elif extra:
        tree.update({f"many/{i}.txt": b"x" for i in range(extra)})
    return {k: v for k, v in tree.items() if k not in ("", ".")}
