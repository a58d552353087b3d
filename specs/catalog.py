"""What a spec may name: installed providers, configured accounts and the regions they allow.

The spec layer stays pure: the caller builds a ``Catalog`` value (provider names
from the installed entry points; accounts and regions from the config, when one
is known) and the loader reports every name outside it as a spec problem, so a
typo in ``provider:`` holds its application instead of looking like a deletion.
Also here: the files under the spec path that are not specs, and which
applications they may define (pruning is held for those).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core import errors, model

__all__ = ["Catalog", "check_application", "is_spec_file", "may_define", "unread_notice"]

SPEC_SUFFIXES = (".yaml", ".yml")
_APP_LINE = re.compile(r"^\s*[\"']?application[\"']?\s*:\s*(?P<value>.*?)\s*(#.*)?$", re.M)
_APP_NAME = re.compile(r"^[a-z][a-z0-9]*$")
SCAN_BYTES = 64 * 1024
"""How much of a file that is not a spec is looked at for ``application:`` lines."""


@dataclass(frozen=True, slots=True)
class Catalog:
    """Names a spec may use. ``accounts`` None: accounts and regions are not checked (no config known).

    ``accounts`` maps provider -> account -> the regions the account allows (empty: any region).
    """

    providers: frozenset[str]
    accounts: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None
    source: str = field(default="the config", compare=False)
    """How messages name where accounts come from, e.g. the config file's path."""
    verify: frozenset[str] | None = None
    """Verification endpoints the config names (``verify.endpoints``); None: not checked."""
    analysis: bool | None = None
    """Whether the config names a Prometheus for canary analysis (``analysis.prometheus``); None: not checked."""


def check_application(app: model.Application, catalog: Catalog) -> list[errors.SpecProblem]:
    """Every cluster of ``app`` naming a provider, account or region outside ``catalog``."""
    out: list[errors.SpecProblem] = []
    file = app.source.file
    for i, c in enumerate(app.clusters):
        src = c.source  # its field paths say where it is written (clusters[i], or environments[e].clusters[i])
        at = src.fields[0][0].rsplit(".", 1)[0] if src.fields else f"clusters[{i}]"
        if c.provider not in catalog.providers:
            installed = ", ".join(sorted(catalog.providers)) or "none"
            out.append(errors.SpecProblem(file, src.line_of(f"{at}.provider"), f"{at}.provider",
                                          f"unknown provider {c.provider!r} (installed: {installed})"))
            continue
        if catalog.verify is not None:
            for j, hook in enumerate(c.strategy.verify):
                if hook not in catalog.verify:
                    known = ", ".join(sorted(catalog.verify)) or "none"
                    out.append(errors.SpecProblem(
                        file, src.line_of(f"{at}.strategy.verify[{j}]"), f"{at}.strategy.verify[{j}]",
                        f"verification endpoint {hook!r} is not configured (configured: {known}; "
                        f"verify.endpoints in {catalog.source})"))
        if catalog.analysis is False and c.strategy.canary is not None:
            out.append(errors.SpecProblem(
                file, src.line_of(f"{at}.strategy"), f"{at}.strategy.canary",
                f"a canary is judged on Prometheus metrics, and analysis.prometheus is not configured "
                f"in {catalog.source}"))
        if catalog.accounts is None:
            continue
        accounts = catalog.accounts.get(c.provider, {})
        if c.account not in accounts:
            known = ", ".join(sorted(accounts)) or "none"
            out.append(errors.SpecProblem(
                file, src.line_of(f"{at}.account"), f"{at}.account",
                f"account {c.account!r} is not configured for provider {c.provider} "
                f"(configured: {known}; providers.{c.provider}.accounts in {catalog.source})"))
            continue
        allowed = accounts[c.account]
        for j, region in enumerate(c.regions):
            if allowed and region not in allowed:
                out.append(errors.SpecProblem(
                    file, src.line_of(f"{at}.regions[{j}]"), f"{at}.regions[{j}]",
                    f"region {region!r} is not allowed by account {c.provider}/{c.account} "
                    f"(allowed: {', '.join(allowed)}; providers.{c.provider}.accounts.{c.account}.regions)"))
    return out


def is_spec_file(path: str) -> bool:
    """``.yaml`` and ``.yml``, in any letter case."""
    return path.lower().endswith(SPEC_SUFFIXES)


def may_define(path: str, data: bytes) -> tuple[str, ...]:
    """Applications a file that is not read as a spec may define: its ``application:`` lines, and the
    stem of a spec-like name (``blog.yaml.bak``); ``*`` when an ``application:`` value is a template."""
    text = data[:SCAN_BYTES].decode("utf-8", errors="replace")
    names: set[str] = set()
    for m in _APP_LINE.finditer(text):
        value = m.group("value").strip("\"'")
        if "{{" in value or "{%" in value:
            return ("*",)
        if _APP_NAME.match(value):
            names.add(value)
    name = path.rsplit("/", 1)[-1].lower()
    stem = name.split(".", 1)[0]
    if (".yaml" in name or ".yml" in name) and _APP_NAME.match(stem):  # blog.yaml.bak, blog.yml~
        names.add(stem)
    return tuple(sorted(names))


def unread_notice(path: str, apps: tuple[str, ...]) -> errors.SpecProblem:
    if apps == ("*",):
        held = "; pruning is held for every application while it is here"
    elif apps:
        held = f"; pruning is held for {', '.join(apps)} while it is here"
    else:
        held = ""
    return errors.SpecProblem(path, 1, "", f"not read: only .yaml and .yml files are specs{held}")
