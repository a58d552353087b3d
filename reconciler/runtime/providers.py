"""Provider instances, one per (provider, account), built on first use from the config in force.

A reload that changes an account's settings retires its instance: the next use builds a new one,
while executions already running keep the one they started with (closed with the engine).
"""

from __future__ import annotations

import functools
import threading

from providers import base as provider_base
from reconciler.config import settings as config_mod
from reconciler.core import clock as clock_mod
from reconciler.core import errors
from reconciler.state import store as store_mod
from specs import catalog as spec_catalog


class Providers:
    def __init__(self, config: config_mod.Config, clock: clock_mod.Clock) -> None:
        self.config = config
        self.clock = clock
        self.installed = provider_base.installed_names()
        self._open: dict[tuple[str, str], provider_base.Provider] = {}
        self._retired: list[provider_base.Provider] = []
        self._lock = threading.Lock()

    def get(self, name: str, account: str) -> provider_base.Provider:
        """The provider of ``account``; an account the config does not have is a ``ConfigError`` naming it."""
        key = (name, account)
        with self._lock:
            if key in self._open:
                return self._open[key]
            accounts = self.config.accounts(name)
            if account not in accounts:
                known = ", ".join(sorted(accounts)) or "none"
                raise errors.ConfigError(
                    f"provider {name!r} has no account {account!r} in the config "
                    f"(providers.{name}.accounts; configured: {known})"
                )
            ctx = provider_base.ProviderContext(
                state_url=self.config.state_url, state_dir=self.config.state_dir, clock=self.clock,
                open_database=functools.partial(store_mod.make_engine, self.config.state_url),
            )
            prov = provider_base.make_provider(name, account, dict(accounts[account] or {}), ctx)
            self._open[key] = prov
            return prov

    def reconfigure(self, new: config_mod.Config) -> list[str]:
        """Use ``new`` from now on; the labels of the accounts whose settings changed (their instances retire)."""
        changed: list[str] = []
        with self._lock:
            old = self.config
            for key in list(self._open):
                name, account = key
                if dict(old.accounts(name).get(account) or {}) != dict(new.accounts(name).get(account) or {}):
                    self._retired.append(self._open.pop(key))
                    changed.append(f"providers.{name}.accounts.{account}")
            self.config = new
        return changed

    def catalog(self, *, accounts: bool = True) -> spec_catalog.Catalog:
        """What specs may name: installed providers; with ``accounts``, the config's accounts and regions."""
        return catalog_for(self.config, self.installed, accounts=accounts)

    def close(self) -> None:
        with self._lock:
            for p in [*self._open.values(), *self._retired]:
                p.close()
            self._open.clear()
            self._retired.clear()


def catalog_for(config: config_mod.Config, installed: frozenset[str], *, accounts: bool) -> spec_catalog.Catalog:
    """The names specs may use under ``config``: installed providers, configured accounts and regions."""
    if not accounts:
        return spec_catalog.Catalog(installed)
    table: dict[str, dict[str, tuple[str, ...]]] = {}
    for prov in config.providers:
        table[prov] = {}
        for name, acc in config.accounts(prov).items():
            regions = acc.get("regions") if isinstance(acc, dict) else None
            table[prov][str(name)] = tuple(str(r) for r in regions) if isinstance(regions, list) else ()
    return spec_catalog.Catalog(installed, table, source=str(config.path) if config.path else "the config",
                                verify=frozenset(config.verify), analysis=config.prometheus is not None)
