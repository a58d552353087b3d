"""A real engine (temp Git repo, local provider, SQLite) behind the real HTTP app, driven in-process.

``Site`` holds tokens for every scope, a wall clock the session tests move, and
runs passes on demand, so every route is tested against the product itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pygit2
import pytest
from werkzeug.test import Client, TestResponse

from reconciler import http as http_api
from reconciler.config import settings as config_mod
from reconciler.console import backend
from reconciler.runtime import engine as engine_mod
from reconciler.runtime import pipeline
from tests.conftest import DesiredRepo, app_spec, write_config

POLICIES = "applications:\n  payments: {require_approval: always}\n"
TAGS = 'tags: {team: "<script>alert(1)</script>", owner_token: "s3cret-tag-value"}\n'
# name -> (secret, scopes); "ci" is configured by its SHA-256, the others by file
TOKENS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "admin": ("admin-secret-000", {"*": ["admin"]}),
    "viewer": ("viewer-secret-000", {"*": ["read"]}),
    "approver": ("approver-secret-000", {"payments": ["approve"]}),
    "operator": ("operator-secret-000", {"check*": ["operate"], "*": ["read"]}),
    "ci": ("ci-secret-000000", {"*": ["read"]}),
}


class WallClock:
    """Seconds since the epoch that a test moves (sessions expire by it)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Reply(TestResponse):
    """A test response whose ``json`` is the JSON body the API answers with, typed as a JSON value rather than
    ``Any | None``: a test indexes it directly, and a body that is not JSON fails right here, naming it."""

    @property
    def json(self) -> Any:
        assert self.is_json, f"HTTP {self.status}, not JSON: {self.get_data(as_text=True)[:300]}"
        return self.get_json()

    @staticmethod
    def of(response: TestResponse) -> Reply:
        """The response of a client made with ``response_wrapper=Reply``, as one."""
        assert isinstance(response, Reply), type(response)
        return response


@dataclass
class Site:
    repo: DesiredRepo
    config_path: Path
    engine: engine_mod.Engine
    api: http_api.Api
    clock: WallClock
    triggered: list[str] = field(default_factory=list)

    def client(self) -> Client:
        return Client(self.api, response_wrapper=Reply)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[name][0]}"}

    def get(self, path: str, who: str | None = None, **kw: Any) -> Reply:
        return Reply.of(self.client().get(path, headers=self.auth(who) if who else {}, **kw))

    def post(self, path: str, who: str | None = None, json: Any = None) -> Reply:
        return Reply.of(self.client().post(path, headers=self.auth(who) if who else {}, json=json))

    def reconcile(self) -> pipeline.PassResult:
        """A pass (its executions run inline), then the status it left, as the daemon refreshes it."""
        result = self.engine.reconcile(reason="test")
        self.engine.refresh_status("test")
        return result

    def signed_in(self, who: str) -> Client:
        """A browser-like client with a console session for ``who``."""
        client = self.client()
        form = client.get("/signin")
        res = client.post("/signin", data={"signin_csrf": signin_csrf_of(form.get_data(as_text=True)),
                                           "token": TOKENS[who][0], "next": "/"})
        assert res.status_code == 303, res.get_data(as_text=True)
        return client


def signin_csrf_of(html: str) -> str:
    found = re.search(r'name="signin_csrf" value="([^"]+)"', html)
    assert found, "no sign-in CSRF field in the page"
    return found.group(1)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def make_site(tmp_path: Path, *, public_read: bool = False, legacy: bool = False,
              apps: dict[str, str] | None = None,
              extra_tokens: dict[str, tuple[str, dict[str, list[str]]]] | None = None,
              bare_remote: bool = False) -> Site:
    """``extra_tokens`` beside ``TOKENS``; ``bare_remote``: the daemon reads a bare clone (a remote one can push to)."""
    repo = DesiredRepo(tmp_path / "desired")
    for name, text in (apps or {
        "checkout": app_spec(regions=("us-east-1", "eu-west-1"),
                             extra=TAGS + "load_balancers: [checkout-web]\nsecurity_groups: [checkout-sg]\n")
        + "load_balancers: [{name: checkout-web}]\nsecurity_groups: [{name: checkout-sg}]\n",
        "payments": app_spec("payments", regions=("us-east-1",)),
    }).items():
        repo.write(f"apps/{name}.yaml", text)
    repo.write("apps/policies.yaml", POLICIES)
    repo.commit("initial")
    tokens: list[dict[str, Any]] = []
    for name, (secret, scopes) in {**TOKENS, **(extra_tokens or {})}.items():
        if name == "ci":
            tokens.append({"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "scopes": scopes})
        else:
            (tmp_path / f"{name}.token").write_text(secret + "\n")
            tokens.append({"name": name, "file": f"{name}.token", "scopes": scopes})
    http: dict[str, Any] = {"listen": "127.0.0.1:0", "tokens": tokens, "public_read": public_read,
                            "session_ttl": "1h"}
    if legacy:
        (tmp_path / "legacy.token").write_text("legacy-secret-000\n")
        http["token_file"] = "legacy.token"
    url = repo.path
    if bare_remote:
        url = tmp_path / "desired.git"
        pygit2.clone_repository(str(repo.path), str(url), bare=True)
    cfg_path = write_config(tmp_path / "config.yaml", url, tmp_path / "state", http=http)
    cfg = config_mod.load_config(cfg_path)
    eng = engine_mod.Engine(cfg)
    clock = WallClock()
    site = Site(repo, cfg_path, eng, None, clock)  # type: ignore[arg-type]
    site.api = http_api.Api(eng, site.triggered.append, http=cfg.http, branch=cfg.branch, clock=clock,
                           backend=backend.EngineBackend(eng, site.triggered.append))
    return site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = make_site(tmp_path)
    s.reconcile()
    yield s
    s.engine.close()


class PageChecker(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, inline styles, event handler attributes,
    and assets from another origin."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")
        for key, value in attrs:
            if key == "style" or key.startswith("on"):
                self.problems.append(f"{key}= on <{tag}>")
            if key in ("src", "href", "action") and value and re.match(r"^(\w+:)?//", value):
                self.problems.append(f"external {key}={value}")
            if key == "href" and value and value.lower().startswith("javascript:"):
                self.problems.append("javascript: URL")


def csp_problems(html: str) -> list[str]:
    checker = PageChecker()
    checker.feed(html)
    return checker.problems
