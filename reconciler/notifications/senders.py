"""One sender per target type: it delivers one notification or raises ``DeliveryError``.

Slack, Teams and generic webhooks are one JSON POST each, sent with the
standard library (no client library adds anything to a POST, and these three
need no extra installed). Email speaks SMTP with ``smtplib``. GitHub and
GitLab commit statuses use PyGithub and python-gitlab, and the "many
services" target uses apprise; those three come with the ``notify`` extra and
are imported only when such a target is configured. Every failure is mapped
here, once, to "retry later (maybe after N seconds)" or "never deliverable".
"""

from __future__ import annotations

import email.message
import email.utils
import hashlib
import hmac
import importlib
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from reconciler import __version__
from reconciler.core import errors
from reconciler.notifications import history, messages
from reconciler.notifications import settings as settings_mod

log = logging.getLogger(__name__)

USER_AGENT = f"reconciler/{__version__}"
PERMANENT_HTTP = frozenset({400, 413, 415, 422})  # the body itself was refused: sending it again cannot help
EXTRA_HINT = "pip install 'reconciler[notify]'"


class DeliveryError(errors.ReconcilerError):
    """A failed attempt: ``permanent`` ones are dropped at once, the others retried with backoff."""

    def __init__(self, message: str, *, code: str = "error", permanent: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(history.redact(message))
        self.code = code  # a short class for the metrics label: http_503, timeout, connection, ...
        self.permanent = permanent
        self.retry_after = retry_after


class Sender(Protocol):
    def send(self, n: messages.Notification) -> None: ...


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (now if now is not None else time.time()), 0.0)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float, *, what: str) -> tuple[int, bytes]:
    """POST ``body``; 2xx returns, anything else raises a classified ``DeliveryError``."""
    req = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - http(s) checked at load
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read(4096)
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(300).decode("utf-8", "replace").strip()
            status, wait = int(exc.code), retry_after(exc.headers.get("Retry-After"))
        raise DeliveryError(f"{what}: HTTP {status}" + (f": {text}" if text else ""), code=f"http_{status}",
                            permanent=status in PERMANENT_HTTP, retry_after=wait) from exc
    except TimeoutError as exc:
        raise DeliveryError(f"{what}: no answer within {timeout:g}s", code="timeout") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DeliveryError(f"{what}: no answer within {timeout:g}s", code="timeout") from exc
        raise DeliveryError(f"{what}: {exc.reason}", code="connection") from exc
    except OSError as exc:  # reset or closed mid-answer
        raise DeliveryError(f"{what}: {exc}", code="connection") from exc


def _secret(s: settings_mod.Secret, what: str) -> str:
    try:
        value = s.read()
    except errors.ConfigError as exc:
        raise DeliveryError(f"{what}: {exc}", code="secret") from exc
    if not value:
        raise DeliveryError(f"{what}: the secret file {s.file} is empty", code="secret")
    return value


class SlackSender:
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``, a secret: keep it in ``url_file``)."""

    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.HttpSpec)
        self.target, self.spec = target, target.spec

    def send(self, n: messages.Notification) -> None:
        body = json.dumps(messages.slack(n)).encode()
        post(_secret(self.spec.url, "slack"), body, dict(self.spec.headers), self.target.timeout_s, what="slack")


class TeamsSender:
    """A Microsoft Teams workflow ("when a webhook request is received") posting an Adaptive Card."""

    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.HttpSpec)
        self.target, self.spec = target, target.spec

    def send(self, n: messages.Notification) -> None:
        body = json.dumps(messages.teams(n)).encode()
        post(_secret(self.spec.url, "teams"), body, dict(self.spec.headers), self.target.timeout_s, what="teams")


class WebhookSender:
    """Any endpoint: the notification as JSON; ``X-Reconciler-Delivery`` lets a receiver drop repeats."""

    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.HttpSpec)
        self.target, self.spec = target, target.spec

    def send(self, n: messages.Notification) -> None:
        body = messages.webhook(n)
        headers = {"X-Reconciler-Event": n.kind, "X-Reconciler-Delivery": str(n.event_id), **dict(self.spec.headers)}
        if self.spec.signing_secret is not None:
            key = _secret(self.spec.signing_secret, "webhook").encode()
            headers["X-Reconciler-Signature-256"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        post(_secret(self.spec.url, "webhook"), body, headers, self.target.timeout_s, what="webhook")


class EmailSender:
    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.EmailSpec)
        self.target, self.spec = target, target.spec

    def send(self, n: messages.Notification) -> None:
        spec = self.spec
        subject, body = messages.email(n)
        msg = email.message.EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, spec.sender, ", ".join(spec.recipients)
        msg["Date"] = email.utils.formatdate(n.ts, usegmt=True)
        msg["Message-ID"] = email.utils.make_msgid("reconciler-event-" + str(n.event_id))
        msg.set_content(body)
        what = f"smtp {spec.host}:{spec.port}"
        try:
            cls = smtplib.SMTP_SSL if spec.security == "ssl" else smtplib.SMTP
            with cls(spec.host, spec.port, timeout=self.target.timeout_s) as smtp:
                if spec.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if spec.username:
                    password = _secret(spec.password, what) if spec.password else ""
                    smtp.login(spec.username, password)
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc)
            raise DeliveryError(f"{what}: {code} {text}", code=f"smtp_{code}", permanent=500 <= code < 600
                                and code not in (530, 535)) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{what}: every recipient was refused", code="smtp_recipients",
                                permanent=True) from exc
        except TimeoutError as exc:
            raise DeliveryError(f"{what}: no answer within {self.target.timeout_s:g}s", code="timeout") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{what}: {exc}", code="connection") from exc


def _optional(module: str, target: settings_mod.Target) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise errors.ConfigError(f"{target.where}: notifications: target {target.name!r} of type {target.type} "
                                 f"needs the {module} package: {EXTRA_HINT}") from exc


class AppriseSender:
    """Whatever apprise speaks: ``notify()`` never raises, so its result and log decide."""

    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.AppriseSpec)
        self.target, self.spec = target, target.spec
        self.apprise = _optional("apprise", target)
        for url in self.spec.urls:
            if self.apprise.Apprise.instantiate(url) is None:
                raise errors.ConfigError(f"{target.where}: notifications: target {target.name!r}: apprise does "
                                         f"not understand the URL scheme {url.split('://', 1)[0]!r}")

    def send(self, n: messages.Notification) -> None:
        try:
            urls = self.spec.read()
        except errors.ConfigError as exc:
            raise DeliveryError(f"apprise: {exc}", code="secret") from exc
        # In this thread, one service after the other: no pool of apprise's own, and the target's timeout
        # bounds every socket (apprise's own deadline would hand the call to a process-wide pool).
        asset = self.apprise.AppriseAsset(async_mode=False, service_timeout=0)
        ap = self.apprise.Apprise(asset=asset)
        for url in urls:
            service = self.apprise.Apprise.instantiate(url, asset=asset)
            if service is not None:
                service.socket_connect_timeout = service.socket_read_timeout = self.target.timeout_s
                ap.add(service)
        if not len(ap):
            raise DeliveryError("apprise: no usable URL", code="config")
        kind = self.apprise.NotifyType.FAILURE if n.failure else (
            self.apprise.NotifyType.SUCCESS if n.kind in ("deploy_succeeded", "drift_corrected")
            else self.apprise.NotifyType.INFO)
        result = ap.notify(body=n.text, title=n.title, notify_type=kind)
        if not result:
            problems = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
            raise DeliveryError("apprise: " + (problems[-1] if problems else "the service refused it"),
                                code="apprise")


_GITHUB_STATES = {"pending": "pending", "running": "pending", "success": "success", "failure": "failure"}
_GITLAB_STATES = {"pending": "pending", "running": "running", "success": "success", "failure": "failed"}


def _status_or_skip(n: messages.Notification) -> tuple[str, str] | None:
    status = messages.commit_status(n)
    if status is None:
        log.debug("event %s (%s) sets no commit status", n.event_id, n.kind)
    return status


class GitHubSender:
    """``POST /repos/{owner}/{repo}/statuses/{sha}`` through PyGithub (lazy objects: that one request only)."""

    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.ForgeSpec)
        self.target, self.spec = target, target.spec
        self.github = _optional("github", target)

    def send(self, n: messages.Notification) -> None:
        status = _status_or_skip(n)
        if status is None:
            return
        state, description = status
        gh = self.github.Github(
            base_url=self.spec.url, auth=self.github.Auth.Token(_secret(self.spec.token, "github")),
            timeout=max(int(self.target.timeout_s), 1), retry=None, seconds_between_requests=None,
            seconds_between_writes=None, user_agent=USER_AGENT, lazy=True)
        try:
            repo = gh.get_repo(self.spec.repo)
            repo.get_commit(n.commit).create_status(
                state=_GITHUB_STATES[state], description=description, context=f"{self.spec.context}/{n.application}")
        except self.github.GithubException as exc:
            headers = exc.headers or {}
            wait = retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            reset = headers.get("x-ratelimit-reset")
            if wait is None and exc.status in (403, 429) and reset and headers.get("x-ratelimit-remaining") == "0":
                wait = max(float(reset) - time.time(), 0.0)
            msg = (exc.data or {}).get("message", "") if isinstance(exc.data, dict) else ""
            raise DeliveryError(f"github {self.spec.repo}: HTTP {exc.status}" + (f": {msg}" if msg else ""),
                                code=f"http_{exc.status}", permanent=exc.status == 422, retry_after=wait) from exc
        except Exception as exc:  # requests' connection errors and timeouts
            raise _network_error("github", exc, self.target.timeout_s) from exc
        finally:
            gh.close()


class GitLabSender:
    """``POST /projects/{id}/statuses/{sha}`` through python-gitlab."""

    def __init__(self, target: settings_mod.Target) -> None:
        assert isinstance(target.spec, settings_mod.ForgeSpec)
        self.target, self.spec = target, target.spec
        self.gitlab = _optional("gitlab", target)

    def send(self, n: messages.Notification) -> None:
        status = _status_or_skip(n)
        if status is None:
            return
        state, description = status
        gl = self.gitlab.Gitlab(self.spec.url, private_token=_secret(self.spec.token, "gitlab"),
                                timeout=self.target.timeout_s, retry_transient_errors=False, user_agent=USER_AGENT)
        project = int(self.spec.repo) if self.spec.repo.isdigit() else self.spec.repo
        try:
            commit = gl.projects.get(project, lazy=True).commits.get(n.commit, lazy=True)
            commit.statuses.create({"state": _GITLAB_STATES[state], "name": f"{self.spec.context}/{n.application}",
                                    "description": description},
                                   obey_rate_limit=False, max_retries=0)  # a 429 waits in the outbox, not here
        except self.gitlab.exceptions.GitlabError as exc:
            code = int(exc.response_code or 0)
            text = str(exc.error_message or "")
            if code == 400 and "Cannot transition status" in text:
                log.info("gitlab %s: %s is already %s", self.spec.repo, n.commit[:8], state)
                return
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            raise DeliveryError(f"gitlab {self.spec.repo}: HTTP {code}: {text}", code=f"http_{code}",
                                permanent=code in (400, 422), retry_after=retry_after(headers.get("Retry-After"))
                                ) from exc
        except Exception as exc:
            raise _network_error("gitlab", exc, self.target.timeout_s) from exc
        finally:
            gl.session.close()


def _network_error(what: str, exc: Exception, timeout: float) -> DeliveryError:
    if isinstance(exc, DeliveryError):
        return exc
    name = type(exc).__name__
    if "Timeout" in name:
        return DeliveryError(f"{what}: no answer within {timeout:g}s", code="timeout")
    return DeliveryError(f"{what}: {name}: {exc}", code="connection")


BUILDERS: dict[str, Callable[[settings_mod.Target], Sender]] = {
    "slack": SlackSender, "teams": TeamsSender, "webhook": WebhookSender, "email": EmailSender,
    "apprise": AppriseSender, "github": GitHubSender, "gitlab": GitLabSender,
}


def build(target: settings_mod.Target) -> Sender:
    """The sender for ``target``; a missing optional package is a ``ConfigError`` naming the target's line."""
    return BUILDERS[target.type](target)
