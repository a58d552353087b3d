"""The Jinja2 sandbox specs are rendered in, and rendering one file into text or a problem.

Jinja2's ``ImmutableSandboxedEnvironment`` blocks attribute tricks and, being
immutable, keeps one file from changing ``values`` under the next. On top of
it, cheap guards refuse the obvious memory bombs before they are built
(``'x' * 10**10``, ``'x'|center(2000000000)``, ``'%2000000000d' % 1``, huge
format widths and powers). They are a first line only: ``renderpool`` runs this
module in worker processes whose CPU time and memory are limited, and that is
what bounds any template.
"""

from __future__ import annotations

import re
import string
import types
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.filters
import jinja2.runtime
import jinja2.sandbox
import jinja2.utils

from reconciler.core import errors
from specs import limits as limits_mod

__all__ = ["Interrupted", "has_markup", "render", "template_line"]

_LIMIT = limits_mod.MAX_RENDERED_CHARS
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


class Interrupted(BaseException):
    """Raised from a signal handler to stop a template (the worker's CPU-time alarm); its text is the problem.

    Not an ``Exception``, so nothing in Jinja2 or a template can catch it.
    """


def has_markup(text: str) -> bool:
    """Whether ``text`` needs rendering at all (a third of a cold load's time is compiling templates)."""
    return "{{" in text or "{%" in text or "{#" in text


def _refuse(what: str, size: int) -> None:
    if size > _LIMIT:
        raise jinja2.exceptions.SecurityError(f"{what} would build {size:,} characters")


def _check_percent(fmt: str, args: Any) -> None:
    """``'%2000000000d' % 1``: look at the widths and precisions before formatting."""
    star = False
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for n in (width, precision):
            if n == "*":
                star = True
            elif n:
                _refuse(f"the format width {n}", int(n))
    if star:
        for value in args if isinstance(args, tuple) else (args,):
            if isinstance(value, int) and not isinstance(value, bool):
                _refuse(f"the format width {value}", abs(value))


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``'{:2000000000}'.format(1)``: widths in the format spec, or given as arguments for ``{:{w}}``."""
    nested = False
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will say what is wrong
    for _literal, _name, spec, _conversion in fields:
        if spec:
            nested = nested or "{" in spec
            for n in _DIGITS.findall(spec):
                _refuse(f"the format width {n}", int(n))
    if nested:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool):
                _refuse(f"the format width {value}", abs(value))


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> int:
    value = args[index] if len(args) > index else kwargs.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """The immutable Jinja2 sandbox plus size checks on operators and the str methods that pad or repeat."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) \
                        and len(seq) * times > _LIMIT:
                    raise jinja2.exceptions.SecurityError(f"'*' would build {len(seq) * times:,} items")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right > 0 and (abs(left).bit_length() - 1) * right > 4096:
            raise jinja2.exceptions.SecurityError(f"'**' result too large ({left} ** {right})")
        if operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(target, types.BuiltinMethodType) and isinstance(owner, str):
            name = target.__name__
            if name in _WIDTH_METHODS:
                width = _int_arg(args, kwargs, 0, "tabsize" if name == "expandtabs" else "width")
                _refuse(f"str.{name}({width})", width * (owner.count("\t") if name == "expandtabs" else 1))
            elif name == "format":
                _check_format(owner, args, kwargs)
            elif name == "format_map" and args and isinstance(args[0], dict):
                _check_format(owner, (), args[0])
            elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
                hits = owner.count(args[0]) if args[0] else len(owner) + 1
                _refuse("str.replace", len(owner) + hits * len(args[1]))
        return super().call(__context, __obj, *args, **kwargs)


def _center(value: str, width: int = 80) -> str:
    _refuse(f"center({width})", width if isinstance(width, int) else 0)
    return jinja2.filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
    _refuse(f"indent({pad})", pad * (str(s).count("\n") + 1))
    return jinja2.filters.do_indent(s, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent(str(value), kwargs or args)
    return jinja2.filters.do_format(value, *args, **kwargs)


@jinja2.pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Any:
    if isinstance(indent, int) and indent > 64:
        raise jinja2.exceptions.SecurityError(f"tojson(indent={indent}): at most 64")
    return jinja2.filters.do_tojson(eval_ctx, value, indent)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None:
        _refuse(f"batch({linecount})", linecount if isinstance(linecount, int) else 0)
    return jinja2.filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _refuse(f"slice({slices})", slices if isinstance(slices, int) else 0)
    return jinja2.filters.do_slice(value, slices, fill_with)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if isinstance(n, int) and isinstance(max, int):
        _refuse(f"lipsum({n})", n * max * 10)
    return jinja2.utils.generate_lorem_ipsum(n, html, min, max)


_env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, loader=None, keep_trailing_newline=True)
_env.filters.update(center=_center, indent=_indent, format=_format, tojson=_tojson, batch=_batch, slice=_slice)
_env.globals["lipsum"] = _lipsum


def render(path: str, text: str, values: dict[str, Any], *, values_ok: bool,
           memory_limit: int) -> tuple[str | None, errors.SpecProblem | None]:
    """Render one template; any failure is this file's problem, never the caller's exception.

    ``Interrupted`` (raised by an alarm while this runs) becomes a problem at the template line it stopped.
    """

    def fail(exc: BaseException, message: str) -> tuple[None, errors.SpecProblem]:
        return None, errors.SpecProblem(path, template_line(exc), "", message)

    template: jinja2.Template | None = None
    try:
        template = _env.from_string(text)
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(values=values):
            size += len(chunk)
            if size > _LIMIT:
                return None, errors.SpecProblem(
                    path, 1, "", f"template renders to more than {_LIMIT // (1024 * 1024)} MiB")
            chunks.append(chunk)
        return "".join(chunks), None
    except Interrupted as exc:
        line = 1
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<template>" and template is not None:
                line = template.get_corresponding_lineno(tb.tb_lineno)
            tb = tb.tb_next
        return None, errors.SpecProblem(path, line, "", str(exc))
    except MemoryError as exc:
        return fail(exc, f"template rendering needs more than {limits_mod.format_size(memory_limit)} of memory "
                         "(specs.render_memory); it was stopped")
    except jinja2.TemplateSyntaxError as exc:
        return fail(exc, f"template syntax error: {exc.message}")
    except jinja2.UndefinedError as exc:
        hint = "" if values_ok else " (values.yaml has errors)"
        return fail(exc, f"template: {exc.message}{hint}")
    except jinja2.exceptions.SecurityError as exc:
        return fail(exc, f"template refused by the sandbox: {exc}")
    except jinja2.TemplateError as exc:
        return fail(exc, f"template error: {exc}")
    except RecursionError as exc:
        return fail(exc, "template error: recursion too deep")
    except TypeError as exc:
        if "no loader" in str(exc):  # {% include %}, {% import %}, {% extends %}
            return fail(exc, "template error: include, import and extends are not available in specs")
        return fail(exc, f"template error: {exc}")
    except Exception as exc:  # a template may raise anything: it is the file's problem
        return fail(exc, f"template error: {type(exc).__name__}: {exc}")


def template_line(exc: BaseException) -> int:
    """The template line an exception was raised at (1 when it was not raised inside the template)."""
    tb = exc.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    lineno = getattr(exc, "lineno", None)
    return lineno if isinstance(lineno, int) and lineno > 0 else line
