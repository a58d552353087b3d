"""The notifications config section: every mistake caught at load as file:line: field: message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.config import settings as config_mod
from reconciler.core import errors
from reconciler.notifications import settings as settings_mod

BASE = "repo: {url: ., branch: main}\nstate: sqlite:///state.db\n"


def _load(tmp_path: Path, section: str) -> config_mod.Config:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + textwrap.dedent(section).lstrip("\n"))
    return config_mod.load_config(cfg)


def _errors(tmp_path: Path, section: str) -> list[str]:
    with pytest.raises(errors.ConfigError) as exc:
        _load(tmp_path, section)
    return str(exc.value).replace(str(tmp_path / "config.yaml"), "config.yaml").splitlines()


def test_a_full_section_loads_into_frozen_settings_with_files_relative_to_the_config(tmp_path):
    cfg = _load(tmp_path, """
        notifications:
          delivery: {poll: 500ms, retry: {first: 10s, max: 10m}, max_age: 6h}
          targets:
            chat: {type: slack, url_file: slack-url, rate_limit: {per_minute: 20, burst: 2}, timeout: 5s}
            ops: {type: teams, url: "https://example.webhook.office.com/workflows/x"}
            hook: {type: webhook, url: "https://hooks.example.com/reconciler", secret_file: /etc/reconciler/hook,
                   headers: {X-Team: payments}, max_age: 1h}
            mail: {type: email, smtp: {host: smtp.example.com, username: bot, password_file: smtp-pass},
                   from: reconciler@example.com, to: [ops@example.com]}
            many: {type: apprise, urls_file: apprise-urls}
          commit_status:
            forge: {type: github, repo: acme/desired-state, token_file: github-token}
            lab: {type: gitlab, url: "https://gitlab.example.com", project: ops/desired-state, token_file: gl}
        """)
    n = cfg.notifications
    assert n.delivery == settings_mod.Delivery(0.5, 10.0, 600.0, 21600.0)
    assert n.names(commit_status=False) == ("chat", "ops", "hook", "mail", "many")
    assert n.names(commit_status=True) == ("forge", "lab")
    chat = n.target("chat")
    assert chat is not None and chat.timeout_s == 5.0 and chat.rate_limit == settings_mod.RateLimit(20.0, 2)
    assert isinstance(chat.spec, settings_mod.HttpSpec) and chat.spec.url.file == tmp_path / "slack-url"
    assert chat.max_age_s == 21600.0 and n.target("hook").max_age_s == 3600.0  # type: ignore[union-attr]
    mail = n.target("mail")
    assert isinstance(mail.spec, settings_mod.EmailSpec)  # type: ignore[union-attr]
    assert (mail.spec.port, mail.spec.security) == (587, "starttls")  # type: ignore[union-attr]
    forge = n.target("forge")
    assert isinstance(forge.spec, settings_mod.ForgeSpec)  # type: ignore[union-attr]
    assert forge.spec.url == "https://api.github.com" and forge.spec.context == "reconciler"  # type: ignore[union-attr]
    assert forge.commit_status and chat.where == f"{tmp_path / 'config.yaml'}:6"  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        chat.name = "other"  # type: ignore[misc]


def test_no_section_means_no_targets() -> None:
    assert not config_mod.load_config(None).notifications.enabled


@pytest.mark.parametrize(("section", "expected"), [
    ("""
     notifications:
       targets:
         chat: {type: slak, url: "https://x"}
     """, "config.yaml:5: notifications.targets.chat.type: expected one of slack, teams, webhook, email, apprise, "
          "got 'slak'"),
    ("""
     notifications:
       targets:
         chat:
           type: slack
     """, "config.yaml:5: notifications.targets.chat.url: required (or url_file: a file holding the URL, "
          "for URLs with tokens)"),
    ("""
     notifications:
       targets:
         chat:
           type: slack
           url: hooks.slack.invalid/x
     """, "config.yaml:7: notifications.targets.chat.url: 'hooks.slack.invalid/x' is not an http(s) URL"),
    ("""
     notifications:
       targets:
         chat:
           type: slack
           url_file: u
           chanel: deploys
     """, "config.yaml:8: notifications.targets.chat.chanel: unknown field; allowed here: max_age, rate_limit, "
          "timeout, type, url, url_file"),
    ("""
     notifications:
       delivery:
         max_age: soon
     """, "config.yaml:5: notifications.delivery.max_age: 'soon' is not a duration (use e.g. 500ms, 30s, 10m, 1h)"),
    ("""
     notifications:
       commit_status:
         gh:
           type: github
           repo: just-a-name
           token_file: t
     """, "config.yaml:7: notifications.commit_status.gh.repo: expected owner/name"),
    ("""
     notifications:
       commit_status:
         gh: {type: github, repo: o/r}
     """, "config.yaml:5: notifications.commit_status.gh.token_file: required: a file holding the API token"),
    ("""
     notifications:
       targets:
         mail: {type: email, smtp: {host: h}, from: me, to: [ops@example.com]}
     """, "config.yaml:5: notifications.targets.mail.from: 'me' is not an email address"),
    ("""
     notifications:
       targets:
         chat: {type: slack, url_file: u, rate_limit: {per_minute: -1}}
     """, "config.yaml:5: notifications.targets.chat.rate_limit.per_minute: expected a number of at least 0, got -1"),
    ("""
     notifications:
       targets:
         Chat Room: {type: slack, url_file: u}
     """, "config.yaml:5: notifications.targets.Chat Room: a target name is lowercase letters, digits, '-' and '_'"),
    ("""
     notifications:
       targets:
         dup: {type: slack, url_file: u}
       commit_status:
         dup: {type: github, repo: o/r, token_file: t}
     """, "config.yaml:7: notifications.commit_status.dup: this name is taken by another target (names are shared "
          "by targets and commit_status)"),
    ("""
     notifications:
       target: {}
     """, "config.yaml:4: notifications.target: unknown field; allowed here: commit_status, delivery, targets"),
])
def test_a_mistake_is_reported_at_load_with_file_line_and_field(tmp_path, section, expected) -> None:
    assert _errors(tmp_path, section) == [expected]


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    found = _errors(tmp_path, """
        notifications:
          targets:
            a: {type: slack}
            b: {type: webhook, url: "ftp://x"}
        """)
    assert [line.split(": ", 2)[1] for line in found] == ["notifications.targets.a.url", "notifications.targets.b.url"]


def test_a_target_whose_package_is_missing_stops_the_daemon_at_start_naming_its_line(tmp_path, monkeypatch) -> None:
    import sys

    from reconciler.notifications import worker

    cfg = _load(tmp_path, """
        notifications:
          commit_status:
            gh: {type: github, repo: o/r, token_file: t}
        """)
    monkeypatch.setitem(sys.modules, "github", None)  # as if the notify extra were not installed
    with pytest.raises(errors.ConfigError, match=r"config.yaml:5: notifications: target 'gh' of type github "
                                                 r"needs the github package: pip install 'reconciler\[notify\]'"):
        worker.check(cfg)


def test_an_apprise_url_it_does_not_know_is_refused_before_the_first_event(tmp_path) -> None:
    from reconciler.notifications import worker

    cfg = _load(tmp_path, """
        notifications:
          targets:
            many: {type: apprise, urls: ["nosuchservice://x"]}
        """)
    with pytest.raises(errors.ConfigError, match=r"config.yaml:5: .* does not understand the URL scheme 'nosuch"):
        worker.check(cfg)
