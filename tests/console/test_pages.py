"""The console's pages in-process: sign-in and sessions, CSRF on every form, scopes behind every action,
escaping of values from specs, and a page that a strict Content-Security-Policy leaves whole."""

from __future__ import annotations

import html
import re
import urllib.parse
from pathlib import Path

import pytest
from werkzeug.test import Client

from reconciler.console import app as console_app
from tests.conftest import app_spec
from tests.console.conftest import TOKENS, Site, csp_problems, csrf_of, make_site, signin_csrf_of

PAGES = ["/", "/apps/checkout", "/apps/payments", "/plan", "/executions", "/executions?application=checkout",
         "/history", "/history?application=payments", "/confirm/pause?target=checkout",
         "/confirm/rollback?target=checkout-main", "/confirm/freeze", "/confirm/reconcile"]


def _location(res: object) -> str:
    return str(res.headers["Location"])  # type: ignore[attr-defined]


def test_a_page_without_a_session_redirects_to_sign_in_and_back(site: Site) -> None:
    client = site.client()
    res = client.get("/apps/checkout?x=1")
    assert res.status_code == 303
    assert _location(res) == "/signin?" + urllib.parse.urlencode({"next": "/apps/checkout?x=1"})
    form = client.get(_location(res))
    html = form.get_data(as_text=True)
    assert form.status_code == 200 and 'for="token"' in html and 'value="/apps/checkout?x=1"' in html
    cookie = form.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    res = client.post("/signin", data={"signin_csrf": signin_csrf_of(html), "token": TOKENS["viewer"][0],
                                       "next": "/apps/checkout?x=1"})
    assert res.status_code == 303 and _location(res) == "/apps/checkout?x=1"
    session_cookie = next(v for k, v in res.headers.items() if k == "Set-Cookie" and "reconciler_session" in v)
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and "Path=/" in session_cookie
    page = client.get("/apps/checkout")
    assert page.status_code == 200 and "Signed in as viewer." in page.get_data(as_text=True)
    assert TOKENS["viewer"][0] not in page.get_data(as_text=True) + session_cookie


def test_sign_in_refuses_a_wrong_token_a_foreign_form_and_an_outside_next(site: Site) -> None:
    client = site.client()
    html = client.get("/signin").get_data(as_text=True)
    res = client.post("/signin", data={"signin_csrf": signin_csrf_of(html), "token": "guess", "next": "/"})
    assert res.status_code == 401 and "matches no configured token" in res.get_data(as_text=True)
    other = site.client()  # a form posted from elsewhere: no sign-in cookie
    res = other.post("/signin", data={"signin_csrf": signin_csrf_of(html), "token": TOKENS["viewer"][0],
                                      "next": "/"})
    assert res.status_code == 403 and "another site" in res.get_data(as_text=True)
    html = client.get("/signin").get_data(as_text=True)
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        res = client.post("/signin", data={"signin_csrf": signin_csrf_of(html), "token": TOKENS["viewer"][0],
                                           "next": evil})
        assert res.status_code == 303 and _location(res) == "/", evil
        html = client.get("/signin").get_data(as_text=True)


def test_every_page_renders_under_a_strict_csp_with_no_inline_code(site: Site) -> None:
    client = site.signed_in("admin")
    executions = site.get("/api/v1/executions", "admin").json["executions"]
    for path in [*PAGES, f"/executions/{executions[0]['id']}", "/signin"]:
        res = client.get(path)
        assert res.status_code == 200, (path, res.get_data(as_text=True)[:500])
        assert res.headers["Content-Security-Policy"] == console_app.CSP
        assert "script-src 'self'" in console_app.CSP and "unsafe-inline" not in console_app.CSP
        assert res.headers["X-Frame-Options"] == "DENY" and res.headers["X-Content-Type-Options"] == "nosniff"
        assert csp_problems(res.get_data(as_text=True)) == [], path
    for partial in ("/?partial=1", "/executions?partial=1", "/apps/checkout?partial=1"):
        body = client.get(partial).get_data(as_text=True)
        assert "<html" not in body and "<table" in body, partial
    css = client.get("/static/console.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    js = client.get("/static/console.js")
    assert js.headers["Content-Type"].startswith("text/javascript") and "data-refresh" in js.get_data(as_text=True)
    assert client.get("/static/../pages.py").status_code == 404
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "there is no page at /nowhere" in missing.get_data(as_text=True)


def test_values_from_specs_render_as_text(site: Site) -> None:
    html = site.signed_in("viewer").get("/apps/checkout").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "s3cret-tag-value" not in html and "(hidden)" in html
    assert "checkout-web" in html and "checkout-sg" in html


def test_a_cross_site_form_post_is_refused_without_its_csrf_token(site: Site) -> None:
    client = site.signed_in("operator")
    confirm = client.get("/confirm/pause?target=checkout")
    assert confirm.status_code == 200
    token = csrf_of(confirm.get_data(as_text=True))
    res = client.post("/actions/pause", data={"target": "checkout", "reason": "forged"})
    assert res.status_code == 403 and "CSRF token is missing" in res.get_data(as_text=True)
    res = client.post("/actions/pause", data={"target": "checkout", "csrf": "guessed"})
    assert res.status_code == 403
    res = client.post("/actions/pause", data={"target": "checkout", "csrf": token},
                      headers={"Origin": "https://evil.example"})
    assert res.status_code == 403 and "another site" in res.get_data(as_text=True)
    assert "checkout" not in site.get("/api/v1/status", "viewer").json["paused"]
    api = client.post("/api/v1/pause/checkout", json={})
    assert api.status_code == 401, "API changes take a bearer token, never the session cookie"
    assert client.get("/api/v1/status").status_code == 200, "reads take the session (the live refresh)"
    no_session = site.client().post("/actions/pause", data={"target": "checkout", "csrf": token})
    assert no_session.status_code == 401 and "Sign in first" in no_session.get_data(as_text=True)
    res = client.post("/actions/pause", data={"target": "checkout", "csrf": token, "reason": "incident",
                                              "by": "mallory"})
    assert res.status_code == 303 and _location(res) == "/apps/checkout"
    assert site.get("/api/v1/status", "viewer").json["paused"]["checkout"]["by"] == "operator"
    assert "checkout paused." in client.get("/apps/checkout").get_data(as_text=True)


def test_an_action_without_its_scope_gets_a_clear_page(site: Site) -> None:
    client = site.signed_in("viewer")
    (pending,) = site.get("/api/v1/approvals", "admin").json["approvals"]
    res = client.get(f"/confirm/approve?target={pending['change_id']}")
    text = res.get_data(as_text=True)
    assert res.status_code == 403 and "token &#39;viewer&#39; has no approve scope" in text
    assert "Traceback" not in text and "Sign in with another token" in text
    token = csrf_of(client.get("/").get_data(as_text=True))
    res = client.post("/actions/freeze", data={"csrf": token, "reason": "x"})
    assert res.status_code == 403 and "no admin scope for every application" in res.get_data(as_text=True)
    assert client.get("/confirm/explode?target=x").status_code == 404


def test_an_approval_from_the_console_runs_the_held_change(site: Site) -> None:
    client = site.signed_in("approver")
    plan = client.get("/plan").get_data(as_text=True)
    (pending,) = site.get("/api/v1/approvals", "admin").json["approvals"]
    assert "Waiting for approval" in plan and pending["change_id"] in plan
    confirm = client.get(f"/confirm/approve?target={pending['change_id']}")
    assert confirm.status_code == 200 and 'name="comment"' in confirm.get_data(as_text=True)
    res = client.post("/actions/approve", data={"csrf": csrf_of(confirm.get_data(as_text=True)),
                                                "target": pending["change_id"], "comment": "ok"})
    assert res.status_code == 303 and _location(res) == "/plan"
    assert site.triggered == ["approve"]
    site.reconcile()
    serving = [g["server_group"] for g in site.get("/api/v1/status", "viewer").json["server_groups"]
               if g["application"] == "payments" and g["enabled"]]
    assert serving == ["payments-main-v000"]
    events = site.get("/api/v1/history", "viewer").json["events"]
    assert any(e["message"] == f"{pending['change_id']} approved by approver: ok" for e in events)


def test_every_console_action_works_behind_its_confirmation(site: Site) -> None:
    client = site.signed_in("admin")
    site.repo.write("apps/checkout.yaml", site.repo.path.joinpath("apps/checkout.yaml").read_text()
                    .replace("checkout-1.0", "checkout-2.0")).commit("v2")
    site.reconcile()

    def act(action: str, target: str = "", **fields: str) -> str:
        confirm = client.get(f"/confirm/{action}?" + urllib.parse.urlencode({"target": target}))
        assert confirm.status_code == 200, confirm.get_data(as_text=True)
        res = client.post(f"/actions/{action}", data={"csrf": csrf_of(confirm.get_data(as_text=True)),
                                                       "target": target, **fields})
        assert res.status_code == 303, res.get_data(as_text=True)
        return client.get(_location(res)).get_data(as_text=True)

    assert "Frozen" in act("freeze", reason="release")
    assert "Freeze lifted." in act("unfreeze")
    assert "A pass was started." in act("reconcile") and "console" in site.triggered
    assert "checkout-main paused." in act("pause", "checkout-main")
    assert "checkout-main resumed." in act("resume", "checkout-main")
    page = act("rollback", "checkout-main", region="us-east-1")
    assert "Rolling back checkout-main in us-east-1" in page
    res = client.post("/actions/freeze", data={"csrf": csrf_of(page), "reason": ""})
    assert res.status_code == 400 and "needs a reason" in res.get_data(as_text=True)


def test_an_expired_session_and_a_rotated_token_send_the_reader_to_sign_in(site: Site, tmp_path: Path) -> None:
    client = site.signed_in("viewer")
    assert client.get("/").status_code == 200
    site.clock.now += 3601
    res = client.get("/plan")
    assert res.status_code == 303 and "expired=1" in _location(res)
    assert "Your session has ended" in client.get(_location(res)).get_data(as_text=True)
    client = site.signed_in("viewer")
    (tmp_path / "viewer.token").write_text("viewer-rotated-000\n")
    res = client.get("/")
    assert res.status_code == 303 and "expired=1" in _location(res)


def test_signing_out_ends_the_session(site: Site) -> None:
    client = site.signed_in("viewer")
    token = csrf_of(client.get("/").get_data(as_text=True))
    assert client.post("/signout", data={}).status_code == 403
    res = client.post("/signout", data={"csrf": token})
    assert res.status_code == 303 and _location(res) == "/signin?signed_out=1"
    assert client.get("/").status_code == 303


@pytest.mark.parametrize("public_read", [True, False])
def test_public_read_shows_pages_without_a_session_but_not_actions(tmp_path: Path, public_read: bool) -> None:
    s = make_site(tmp_path, public_read=public_read)
    try:
        s.reconcile()
        client = Client(s.api)
        res = client.get("/")
        if not public_read:
            assert res.status_code == 303
            return
        assert res.status_code == 200 and "Reading without a token" in res.get_data(as_text=True)
        res = client.get("/confirm/pause?target=checkout")
        assert res.status_code == 303 and _location(res).startswith("/signin?")
    finally:
        s.engine.close()


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_the_stylesheets_colours_meet_wcag_aa_contrast() -> None:
    css = (Path(console_app.__file__).parent / "static" / "console.css").read_text(encoding="utf-8")
    colours = dict(re.findall(r"--([\w-]+): (#[0-9a-f]{6})", css))
    pairs = [("fg", "bg"), ("muted", "bg"), ("muted", "panel"), ("link", "bg"), ("ok", "ok-bg"),
             ("info", "info-bg"), ("warn", "warn-bg"), ("bad", "bad-bg"), ("bad", "bg"), ("fg", "panel")]
    for fg, bg in pairs:
        light, dark = sorted((_luminance(colours[fg]), _luminance(colours[bg])), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, (fg, bg)
    light, dark = _luminance("#ffffff"), _luminance(colours["focus"])
    assert (light + 0.05) / (dark + 0.05) >= 3.0, "the focus ring stands out (non-text contrast)"


def test_a_failed_deploy_shows_its_reason_in_the_executions_views(site: Site) -> None:
    site.repo.write("apps/checkout.yaml", app_spec(image="checkout-bad", regions=("us-east-1",),
                                                   timeout="300ms")).commit("a bad image")
    site.reconcile()
    client = site.signed_in("viewer")
    rows = site.get("/api/v1/executions?application=checkout", "viewer").json["executions"]
    failed = next(r for r in rows if r["state"] != "succeeded")
    assert failed["error"]
    listing = client.get("/executions").get_data(as_text=True)
    assert html.escape(failed["error"], quote=True) in listing
    page = client.get(f"/executions/{failed['id']}").get_data(as_text=True)
    assert "Failure" in page and html.escape(failed["error"], quote=True) in page
    assert 'data-state="failed"' in page


def test_the_application_page_shows_its_balancers_and_rules_with_groups_and_health(tmp_path: Path) -> None:
    sg = "security_groups:\n  - name: checkout-sg\n    ingress:\n{rules}"
    https, admin = "      - {protocol: tcp, ports: 443, cidr: 0.0.0.0/0}\n", \
        "      - {protocol: tcp, ports: 8443, cidr: 10.0.0.0/8}\n"
    uses = "load_balancers: [checkout-web]\nsecurity_groups: [checkout-sg]\n"
    spec = app_spec(regions=("us-east-1",), extra=uses) + "load_balancers: [{name: checkout-web}]\n" + sg
    site = make_site(tmp_path, apps={"checkout": spec.replace("{rules}", https + admin),
                                     "payments": app_spec("payments", regions=("us-east-1",))})
    try:
        site.reconcile()
        client = site.signed_in("admin")
        page = html.unescape(client.get("/apps/checkout").get_data(as_text=True))
        lbs = page[page.index('id="load_balancers"'):page.index('id="security_groups"')]
        assert "checkout-web" in lbs and "local / default / us-east-1" in lbs
        assert '<span class="badge badge-ready">healthy</span>' in lbs, "its health"
        assert "checkout-main-v000" in lbs and "in traffic" in lbs and "2/2" in lbs, "the group attached"
        assert "health check http:80/ every 30s" in lbs
        sgs = page[page.index('id="security_groups"'):page.index("Recent executions")]
        assert "tcp 443 from 0.0.0.0/0" in sgs and "tcp 8443 from 10.0.0.0/8" in sgs and "checkout-main-v000" in sgs
        assert not csp_problems(page)

        # a narrowed ingress waits for approval: listed, and approved, like a cluster change
        site.repo.write("apps/checkout.yaml", spec.replace("{rules}", https)).commit("drop the admin port")
        site.reconcile()
        (pending,) = [p for p in site.get("/api/v1/approvals", "viewer").json["approvals"]
                      if p["application"] == "checkout"]
        assert pending["cluster"] == "security_group:checkout-sg" and pending["action"] == "update"
        page = client.get("/apps/checkout").get_data(as_text=True)
        assert "Waiting for approval" in page and pending["change_id"] in page
        confirm = client.get(f"/confirm/approve?target={pending['change_id']}")
        res = client.post("/actions/approve", data={"csrf": csrf_of(confirm.get_data(as_text=True)),
                                                    "target": pending["change_id"], "comment": "ok"})
        assert res.status_code == 303
        site.reconcile()
        rows = site.get("/api/v1/applications/checkout", "viewer").json["resources"]
        assert [r["rules"] for r in rows if r["kind"] == "security_group"] == [["tcp 443 from 0.0.0.0/0"]]
    finally:
        site.engine.close()
