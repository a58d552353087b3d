"""The console in headless Chromium (Debian's package, driven by Playwright) against a real daemon process.

One browser for the module, one daemon on the local provider: sign-in, the fleet, a deploy appearing live
in the executions view, an approval from the console starting the held deployment, a refusal for a token
without ``approve``, and a ``<script>`` tag value shown as text. Screenshots of the main pages go to
``$RECONCILER_SCREENSHOTS`` (default ``build/screenshots``; docs/console.md shows a copy from docs/console/).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, DesiredRepo, app_spec, write_config
from tests.console.conftest import POLICIES, TAGS, TOKENS
from tests.daemon.conftest import Daemon, free_port

CHROMIUM = Path("/usr/lib/chromium/chromium")
SHOTS = Path(os.environ.get("RECONCILER_SCREENSHOTS") or ROOT / "build" / "screenshots")
WEB = "load_balancers: [{name: checkout-web}]\n"  # declared: the local provider creates it
ONE = ("us-east-1",)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps (it installs Debian's chromium package)",
                    pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (never `playwright install`: the "
                    "tests use Debian's chromium)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def _no_leftover_threads(browser: Any) -> Iterator[None]:
    """As tests/conftest.py's check, but the browser's: started before, and its event loop's executor threads
    (``asyncio_N``, made on the first screenshot) end with it at the end of the module."""
    before = set(threading.enumerate())
    yield
    still = [t.name for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
             and not t.name.startswith("asyncio_")]
    assert not still, f"threads left running: {still}"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("console-daemon")
    repo = DesiredRepo(tmp / "desired")
    repo.write("apps/checkout.yaml", app_spec(regions=ONE, extra=TAGS + "load_balancers: [checkout-web]\n") + WEB)
    repo.write("apps/payments.yaml", app_spec("payments", regions=ONE, criticality="critical"))
    repo.write("apps/policies.yaml", POLICIES)
    repo.commit("initial")
    tokens = []
    for name, (secret, scopes) in TOKENS.items():
        (tmp / f"{name}.token").write_text(secret + "\n")
        tokens.append({"name": name, "file": f"{name}.token", "scopes": scopes})
    port = free_port()
    cfg = write_config(tmp / "config.yaml", repo.path, tmp / "state", poll={"interval": "1s", "jitter": "0s"},
                       http={"listen": f"127.0.0.1:{port}", "tokens": tokens},
                       providers={"local": {"accounts": {"default": {"boot_seconds": 1.5}}}},
                       daemon={"shutdown_deadline": "5s"})
    d = Daemon(repo, cfg, tmp / "state", port, TOKENS["admin"][0]).start(log_to=tmp / "daemon.log")
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy", timeout=30)
    yield d
    assert d.stop() == 0
    assert "Traceback" not in d.log, d.log


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    pg.on("dialog", lambda d: problems.append(f"a dialog opened: {d.message}"))
    pg.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    yield pg
    context.close()
    assert problems == [], problems


def _shot(pg: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _sign_in(pg: Any, d: Daemon, who: str, path: str = "/") -> None:
    pg.goto(d.url(path))
    assert "/signin" in pg.url
    pg.get_by_label("API token").fill(TOKENS[who][0])
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_url(d.url(path))


def test_without_a_session_the_console_asks_to_sign_in_then_shows_the_fleet(page: Any, daemon: Daemon) -> None:
    page.goto(daemon.url("/apps/checkout"))
    assert page.url.startswith(daemon.url("/signin?next="))
    _shot(page, "signin")
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "That token matches no configured token." in page.inner_text("main")
    page.get_by_label("API token").fill(TOKENS["viewer"][0])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(daemon.url("/apps/checkout"))
    assert page.get_by_role("heading", name="checkout", exact=True).is_visible()
    tags = page.inner_text("table.groups")
    assert "<script>alert(1)</script>" in tags and "(hidden)" in tags
    _shot(page, "application")
    page.get_by_role("link", name="Applications").click()
    rows = page.locator("table.fleet tbody tr")
    assert rows.count() == 2
    assert "Ready" in rows.filter(has_text="checkout").inner_text()
    assert "awaiting approval" in rows.filter(has_text="payments").inner_text()
    _shot(page, "fleet")


def test_a_token_without_approve_gets_a_clear_refusal(page: Any, daemon: Daemon) -> None:
    _sign_in(page, daemon, "viewer", "/plan")
    page.get_by_role("link", name="Approve", exact=True).first.click()
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    assert "token 'viewer' has no approve scope" in page.inner_text("main")
    _shot(page, "refused")


def test_a_deploy_shows_up_live_in_the_executions_view(page: Any, daemon: Daemon) -> None:
    _sign_in(page, daemon, "operator", "/executions")
    before = page.locator("tr.execution").count()
    page.evaluate("window.notReloaded = true")
    v2 = app_spec(image="checkout-2.0", regions=ONE, extra=TAGS + "load_balancers: [checkout-web]\n") + WEB
    daemon.repo.write("apps/checkout.yaml", v2).commit("v2")
    page.locator("tr.execution").nth(before).wait_for(timeout=15_000)  # a new row, without a reload
    first = page.locator("tr.execution").first
    assert "checkout-main" in first.inner_text()
    if first.get_attribute("data-state") == "running":
        _shot(page, "executions-running")
    page.locator('tr.execution[data-state="succeeded"]').nth(before).wait_for(timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert "succeeded" in page.locator("tr.execution").first.inner_text()
    _shot(page, "executions")
    page.locator("tr.execution").first.get_by_role("link").click()
    steps = page.inner_text("table.steps")
    assert "create" in steps.lower() and "done" in steps
    _shot(page, "execution")


def test_an_approval_from_the_console_starts_the_held_deployment(page: Any, daemon: Daemon) -> None:
    _sign_in(page, daemon, "approver", "/plan")
    assert "Waiting for approval" in page.inner_text("main")
    _shot(page, "plan")
    page.get_by_role("link", name="Approve", exact=True).first.click()
    assert "It runs at the next pass" in page.inner_text("main")
    page.get_by_label("Comment (optional)").fill("looks right")
    _shot(page, "confirm")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(daemon.url("/plan"))
    assert "approved by approver" in page.get_by_role("status").first.inner_text()
    daemon.wait_for(lambda: "payments-main-v000" in daemon.serving(), "the approved deployment", timeout=20)
    page.goto(daemon.url("/history?application=payments"))
    assert "approved by approver: looks right" in page.inner_text("table.history")


def test_the_console_is_readable_on_a_phone(browser: Any, daemon: Daemon) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        pg = context.new_page()
        _sign_in(pg, daemon, "viewer")
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
        assert pg.locator("table.fleet tbody th").first.is_visible()
        label = pg.evaluate("getComputedStyle(document.querySelector('table.fleet tbody td'), '::before').content")
        assert label == '"Condition"', "each cell names its column"
        _shot(pg, "fleet-phone")
        pg.keyboard.press("Tab")
        assert pg.evaluate("document.activeElement.textContent") == "Skip to content"
        reached = []
        for _ in range(15):  # every control is reachable by keyboard, with a visible focus ring
            pg.keyboard.press("Tab")
            if pg.evaluate("document.activeElement === document.body"):
                break
            reached.append(pg.evaluate("document.activeElement.textContent.trim()"))
            outline = pg.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", reached[-1]
        assert {"Applications", "History", "Sign out", "checkout", "payments"} <= set(reached), reached
    finally:
        context.close()


def test_screenshots_are_saved() -> None:
    """Runs last in this module: every main page left a screenshot. ``RECONCILER_SCREENSHOTS=docs/console``
    refreshes the copies docs/console.md shows."""
    names = {p.stem for p in SHOTS.glob("*.png")}
    assert {"signin", "fleet", "application", "executions", "execution", "plan", "refused",
            "fleet-phone"} <= names, names
