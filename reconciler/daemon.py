"""``reconciler run``: the long-running service.

APScheduler runs a poll pass every ``poll.interval`` (with jitter, coalesced),
optional cron passes, and passes triggered by webhooks or the API; the engine's
pass lock means two passes never run at once, and deployments run in worker
threads so one application's slow rollout never delays another's pass.

systemd: ``READY=1`` after the first successful repository read, ``STATUS=``
lines, ``WATCHDOG=1`` at half of ``WATCHDOG_USEC`` only while the scheduler is
alive and passes are not stuck, ``STOPPING=1`` on shutdown. SIGTERM stops
scheduling and lets running steps reach a step boundary within
``daemon.shutdown_deadline`` (steps are persisted, so the next start resumes);
a second SIGTERM exits at once. SIGHUP reloads the config without dropping
in-flight work: a valid config reaches every part (scheduler, executor,
providers, HTTP, log level) together; one with any problem changes nothing,
and the log says why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconciler import http as http_api
from reconciler import logs, sdnotify
from reconciler.config import settings as config_mod
from reconciler.core import errors, model
from reconciler.notifications import worker as notify_worker
from reconciler.runtime import collector
from reconciler.runtime import engine as engine_mod

log = logging.getLogger(__name__)


def main(
    config_path: str | None,
    *,
    once: bool = False,
    log_format: str = "auto",
    state: str | None = None,
    branch: str | None = None,
    spec_path: str | None = None,
) -> int:
    """``reconciler run``: exit 0 after a clean or deadline-bounded stop; 1 if the config is unusable."""
    logs.setup_logging(log_format)
    overrides = {"state": state, "branch": branch, "spec_path": spec_path}
    try:
        cfg = config_mod.load_config(config_path, **overrides)
    except errors.ReconcilerError as exc:
        log.error("%s", exc)
        return 1
    logs.set_level(cfg.log_level)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    try:
        if once:
            return _once(cfg)
        return Daemon(config_path, cfg, overrides).run()
    except errors.ReconcilerError as exc:  # the store or the mirror could not be opened
        log.error("%s", exc)
        return 1


def _once(cfg: config_mod.Config) -> int:
    eng = engine_mod.Engine(cfg)
    try:
        result = eng.reconcile(reason="once")
    except errors.ReconcilerError as exc:
        log.error("%s", exc)
        return 1
    except Exception:
        log.exception("the pass failed unexpectedly")
        return 1
    finally:
        eng.close()
    failed = [r for r in result.results if r.state not in (model.ExecState.SUCCEEDED, model.ExecState.SKIPPED)]
    log.info("pass at %s: %d change(s), %d applied, %d failed, %d spec problem(s)",
             (result.commit or "?")[:8], result.changes, len(result.results) - len(failed), len(failed),
             result.problems)
    if result.error:
        log.error("the source could not be read; the pass used the last good commit: %s", result.error)
    # DESIGN §5: `run` exits 0 once a pass ran; failed deployments are in the log, `status` and `history`.
    # Only a pass that could not run at all (no commit, no store) exits 1.
    return 0


def _triggers(cfg: config_mod.Config) -> tuple[IntervalTrigger, list[tuple[CronTrigger, str]]]:
    """The poll trigger and one cron trigger per ``schedules`` item (validated at load)."""
    interval = IntervalTrigger(seconds=cfg.poll_interval_s, jitter=cfg.poll_jitter_s or None)
    crons = [(CronTrigger.from_crontab(s.cron, timezone=s.timezone), s.reason) for s in cfg.schedules]
    return interval, crons


class Daemon:
    def __init__(self, config_path: str | None, cfg: config_mod.Config, overrides: dict[str, Any]) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self.cfg = cfg
        self.engine = engine_mod.Engine(cfg, background=True)
        self.notifier = sdnotify.Notifier()
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None})
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self._wake = threading.Event()  # set by signal handlers so the main loop reacts at once
        self._trigger_lock = threading.Lock()  # one pending trigger job per reason, never two of one id
        self._signals = 0
        self._ready = False
        self._pass_started: float | None = None
        self._api: http_api.Api | None = None
        self._server: http_api.Server | None = None
        self._hub: notify_worker.Hub | None = None  # chat, mail and commit-status delivery

    # ------------------------------------------------------------------ passes

    def _pass(self, reason: str) -> None:
        if self.stop_event.is_set():
            return
        self._pass_started = time.monotonic()
        self.notifier.status(f"reconciling ({reason})")
        try:
            result = self.engine.reconcile(reason=reason)
        except errors.ReconcilerError as exc:
            log.error("pass (%s) failed: %s", reason, exc)
            self.notifier.status(f"error: {exc}")
            return
        except Exception as exc:
            log.exception("pass (%s) failed unexpectedly; the next pass will try again", reason)
            self.notifier.status(f"error: unexpected {type(exc).__name__}; see the log")
            return
        finally:
            self._pass_started = None
        if result.error is None and not self._ready:
            self._ready = True
            self.notifier.ready(f"ready at {(result.commit or '')[:8]}")
            log.info("ready: reconciling %s", (result.commit or "")[:8])
        when = datetime.now(UTC).strftime("%H:%M:%S")
        doing = f"applying {result.dispatched} change(s)" if result.dispatched else "idle"
        summary = (f"{doing}; last pass {when} at {(result.commit or '?')[:8]}: {result.changes} change(s), "
                   f"{result.dispatched} started, {result.problems} spec problem(s)")
        if result.error:
            summary += f"; source: {result.error}"
        self.notifier.status(summary)
        log.info("%s", summary)
        if reason == "poll":
            self._automate()

    def _automate(self) -> None:
        """Image automation once per poll (docs/environments.md): a version it commits deploys on a pass now."""
        try:
            looks = self.engine.automate()
        except Exception:
            log.exception("image automation failed unexpectedly; the next poll looks again")
            return
        if any(look.commit for look in looks):
            self.trigger("automation")

    def trigger(self, reason: str) -> None:
        """Run a pass now (webhook, API); it waits for a pass in progress, never overlaps it.

        A trigger that finds one of its reason still pending adds nothing: that pass has not started, so it
        runs after this trigger anyway. (``replace_existing`` from several threads can leave two jobs of one
        id in APScheduler's memory store, and its loop then fails removing the second.)"""
        job_id = f"trigger-{reason}"
        with self._trigger_lock:
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(self._pass, args=[reason], id=job_id, max_instances=1, coalesce=True)

    # ------------------------------------------------------------------ scheduling

    def _schedule(self, interval: IntervalTrigger, crons: list[tuple[CronTrigger, str]]) -> None:
        """(Re)install the poll and cron jobs from triggers already built (building is what can fail)."""
        if self.scheduler.get_job("poll"):
            self.scheduler.reschedule_job("poll", trigger=interval)
        else:
            self.scheduler.add_job(self._pass, trigger=interval, args=["poll"], id="poll", max_instances=1,
                                   coalesce=True, next_run_time=datetime.now(UTC))
        for job in self.scheduler.get_jobs():
            if job.id.startswith("cron-"):
                job.remove()
        for i, (trigger, reason) in enumerate(crons):
            self.scheduler.add_job(self._pass, trigger=trigger, args=[reason], id=f"cron-{i}", max_instances=1,
                                   coalesce=True)

    def reload(self) -> None:
        """SIGHUP: the new config reaches every part, or none of it does and the log says why."""
        self.notifier.reloading()
        try:
            new = config_mod.load_config(self.config_path, **self.overrides)
            interval, crons = _triggers(new)
            notify_worker.check(new)
            server = self._server if new.http.listen == self.cfg.http.listen else self._bind(new)
        except errors.ReconcilerError as exc:
            log.error("config reload failed, keeping the previous config: %s", exc)
            self.notifier.status(f"config reload failed: {exc}")
            return
        except Exception as exc:
            log.exception("config reload failed unexpectedly, keeping the previous config")
            self.notifier.status(f"config reload failed: unexpected {type(exc).__name__}")
            return
        old = self.cfg
        restart_only = [label for attr, label in (("repo_url", "repo.url"), ("state_url", "state"),
                                                 ("state_dir", "state_dir"))
                        if getattr(new, attr) != getattr(old, attr)]
        if restart_only:
            log.warning("%s changed: that takes effect after a restart; everything else is reloaded",
                        ", ".join(restart_only))
        for warning in new.warnings:
            log.warning("%s", warning)
        changed = self.engine.apply_config(new)
        self._schedule(interval, crons)
        if server is not self._server:
            if self._server is not None:
                self._server.close()
            self._server = server
            if server is not None:
                server.start()
                log.info("http endpoint moved to %s (port %d)", server.listen, server.port)
            changed.append("http.listen")
        if self._api is not None:
            self._api.configure(new.http, new.branch)
        if self._server is not None:
            self._server.set_max_body(new.http.max_body)
        changed += [label for attr, label in (
            ("poll_interval_s", "poll.interval"), ("poll_jitter_s", "poll.jitter"), ("schedules", "schedules"),
            ("log_level", "log.level"), ("shutdown_deadline_s", "daemon.shutdown_deadline")) if
            getattr(new, attr) != getattr(old, attr)]
        changed += [f"http.{f}" for f in ("token_file", "webhook_secret_file", "max_body", "tokens", "public_read",
                                          "session_ttl_s")
                    if getattr(new.http, f) != getattr(old.http, f)]
        if new.notifications != old.notifications:
            changed.append("notifications")
        self.cfg = dataclasses.replace(new, repo_url=old.repo_url, state_url=old.state_url, state_dir=old.state_dir)
        log.info("config reloaded (%s); poll every %.1fs", ", ".join(changed) or "no changes", new.poll_interval_s)
        self._hub = notify_worker.restart(self._hub, self.engine.store, self.cfg)
        logs.set_level(new.log_level)  # after the line above, which must show even when the new level hides info
        self.notifier.status(f"config reloaded; poll every {new.poll_interval_s:.0f}s")

    def _bind(self, cfg: config_mod.Config) -> http_api.Server | None:
        """A server on ``http.listen`` (not yet serving), or None when the endpoint is off."""
        if cfg.http.host is None:
            return None
        if self._api is None:
            self._api = http_api.Api(self.engine, self.trigger, http=cfg.http, branch=cfg.branch)
        return http_api.Server(self._api, cfg.http.host, cfg.http.port, max_body=cfg.http.max_body)

    # ------------------------------------------------------------------ lifecycle

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_event.set()
            self._wake.set()
            return
        self._signals += 1
        if self._signals > 1:
            os.write(2, b"second signal: exiting now (steps are persisted; the next start resumes)\n")
            os._exit(0)
        self.stop_event.set()
        self._wake.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            notify_worker.check(self.cfg)
            interval, crons = _triggers(self.cfg)
            self._server = self._bind(self.cfg)
        except errors.ReconcilerError as exc:
            log.error("%s", exc)
            self.engine.close()
            return 1
        self._schedule(interval, crons)
        if self._server is not None:
            self._server.start()
            log.info("http endpoint on %s (port %d)", self._server.listen, self._server.port)
        self.scheduler.start()
        self._hub = notify_worker.restart(None, self.engine.store, self.cfg)
        log.info("daemon started: %s@%s every %.0fs", self.cfg.repo_url, self.cfg.branch, self.cfg.poll_interval_s)
        tick = sdnotify.watchdog_interval()
        frozen = False
        while True:
            self._wake.wait(tick or 1.0)
            self._wake.clear()
            if self.stop_event.is_set():
                break
            if self._ready and not frozen:
                frozen = True
                collector.freeze()
            if self.reload_event.is_set():
                self.reload_event.clear()
                self.reload()
            if tick and self._healthy():
                self.notifier.watchdog()
        return self._shutdown()

    def _healthy(self) -> bool:
        """For the watchdog: the scheduler runs and no pass is stuck far beyond its usual time."""
        thread = getattr(self.scheduler, "_thread", None)  # BackgroundScheduler's worker loop
        if not self.scheduler.running or thread is None or not thread.is_alive():
            return False
        started = self._pass_started
        return started is None or time.monotonic() - started < max(600.0, 10 * self.cfg.poll_interval_s)

    def _shutdown(self) -> int:
        deadline = self.cfg.shutdown_deadline_s
        log.info("stopping: letting running steps reach a safe point (deadline %.0fs)", deadline)
        self.notifier.stopping()
        self.scheduler.shutdown(wait=False)
        clean = self.engine.stop(deadline)
        if self._hub is not None:
            self._hub.stop()  # pending notifications stay in the outbox for the next start
        if self._server is not None:
            self._server.close()
        self.engine.close()
        self.notifier.close()
        log.info("stopped %s", "cleanly" if clean else "at the deadline; the next start resumes from live state")
        return 0
