"""The ``reconciler`` command. Exit codes are a contract (DESIGN §5): see each command's help.

Why it is this long: one ``cmd_*`` function per command (each 5 to 70 lines) and ``_parser``, whose help texts
are part of the contract; the commands only parse, call the ``Engine`` (or a remote ``Backend``) and print, so
splitting the file would separate each command from its exit codes without making any of them simpler.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reconciler import __version__
from reconciler.config import settings as config_mod
from reconciler.core import errors, model
from reconciler.runtime import collector

log = logging.getLogger("reconciler")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader went away


def main(argv: list[str] | None = None, *, after_step: Callable[[], None] | None = None) -> int:
    """The ``reconciler`` command; ``after_step`` is called after each executed step (the crash tests' entry
    point arms it; the console script never does). Without ``argv`` it is the process's own command (the
    console script): a one-shot command then leaves what it built to the exit (``collector.abandon``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.after_step = after_step
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    if args.command != "run":
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
    try:
        with collector.paused() if args.command in _BUILDERS else contextlib.nullcontext():
            code: int = args.func(args)
            if argv is None and args.command in _BUILDERS:  # the process's own command: it ends now
                collector.abandon()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _broken_pipe()
    except errors.SpecError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    except errors.ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


_BUILDERS = frozenset({"validate", "plan", "status", "history", "events"})
"""Commands that build what they print and end: the collector waits until they do (``runtime.collector``);
the others (``apply``, ``run``) pause it for each pass instead, since they may run for hours."""


def _broken_pipe() -> int:
    """``reconciler status | head``: the reader left; end quietly (no traceback, no flush error at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


@functools.cache  # built once per process: argparse's help strings cost ~15 ms of gettext lookups
def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config file (default: $RECONCILER_CONFIG, else built-in defaults)")
    common.add_argument("--state", help="state store URL (sqlite:///PATH or postgresql://...)")
    common.add_argument("--branch", help="tracked branch (default: the config's, else main)")
    common.add_argument("--spec-path", help="spec directory inside the repo (default: apps)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--server", default=os.environ.get("RECONCILER_SERVER") or None, metavar="URL",
                        help="act through the daemon at URL (its /api/v1/) instead of the local state; the daemon "
                        "records the token's name (default: $RECONCILER_SERVER)")
    remote.add_argument("--token-file", metavar="FILE",
                        help="with --server: a file holding the API token (default: $RECONCILER_TOKEN_FILE, "
                        "else the token in $RECONCILER_TOKEN)")

    p = argparse.ArgumentParser(prog="reconciler", description="GitOps reconciler for VM fleets.")
    p.add_argument("--version", action="version", version=f"reconciler {__version__}")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("validate", parents=[common], help="render and validate a spec tree (exit 0 ok, 1 invalid)",
                       description="Render and validate every spec, policies.yaml and, with --config, the config; "
                       "providers must be installed, and with --config every account must be configured and "
                       "every region allowed by its account, and the config's spec limits apply. Files under the "
                       "spec path that are not .yaml/.yml are reported on stderr (they are not read).")
    s.add_argument("path", nargs="?", default=".", help="repo root or spec directory (default: .)")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="print the JSON Schema of the spec format")
    s.set_defaults(func=cmd_schema, verbose=False)

    s = sub.add_parser("plan", parents=[common, remote],
                       help="show what would change (exit 0 no changes, 2 changes, 1 error)")
    s.add_argument("--repo", help="repository URL or local path (default: the config's)")
    s.add_argument("--ref", help="commit, branch or tag to plan (default: the tracked branch head)")
    s.add_argument("--base", help="compare desired at REF against desired at BASE (offline PR preview)")
    s.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    s.add_argument("--out", help="also write the saved plan to FILE, for `apply --plan FILE` (whatever --format "
                   "prints; it holds user data in full: keep it with your CI secrets)")
    s.add_argument("--detailed-exitcode", action="store_true",
                   help="accepted for familiarity: plan always exits 0 none, 2 changes, 1 error")
    s.add_argument("--max-comment-chars", type=int, default=65536,
                   help="split Markdown into numbered parts of at most this many characters (each part starts "
                   "with the marker line <!-- reconciler-plan -->)")
    s.add_argument("--no-cache", action="store_true",
                   help="evaluate and write afresh: neither use nor keep the answer of an earlier run of the same "
                   "inputs (STATE_DIR/plan-cache)")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("apply", parents=[common], help="apply the plan (exit 0 done, 1 failed or refused)")
    s.add_argument("--plan", help="apply exactly this saved plan; refused if the commit or live state moved")
    s.add_argument("--env", metavar="ENV", help="only the changes of environment ENV (what its constraints allow "
                   "now; docs/environments.md)")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser("run", parents=[common], help="the daemon; --once for one reconcile pass",
                       description="The daemon: a reconcile pass every poll.interval; after each poll, image "
                                   "automation commits a newer image's version for applications with automation: "
                                   "{image, policy} (docs/environments.md).")
    s.add_argument("--once", action="store_true", help="one pass, waiting for its deployments, then exit "
                                                       "(no image automation)")
    s.add_argument("--log-format", choices=("auto", "text", "json"), default="auto")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("status", parents=[common, remote], help="applications, conditions, server groups")
    s.add_argument("application", nargs="?", help="only this application, with its pipeline (environments) "
                                                                "and its image automation's last look")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("history", parents=[common, remote], help="what happened, newest first")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--application")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("events", parents=[common],
                       help="the history oldest first, as a stream: --follow waits for new events (exit 0)",
                       description="Print history events oldest first; the same events GET /api/v1/events streams. "
                                   "With --follow, keep printing new ones until interrupted.")
    s.add_argument("--follow", "-f", action="store_true", help="wait for new events (Ctrl-C ends, exit 0)")
    s.add_argument("--application", help="only this application's events")
    s.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only events of this kind (repeatable), e.g. deploy_failed")
    s.add_argument("--after", type=int, metavar="ID", help="start after this event id (as Last-Event-ID does)")
    s.add_argument("--limit", type=int, default=50, help="without --after: begin with the last N events (default 50)")
    s.add_argument("--format", choices=("text", "json"), default="text", help="json: one JSON object a line")
    s.set_defaults(func=cmd_events)

    for name, helptext in (("approve", "approve a change or plan id (also a manual judgment: "
                                        "pause_for_approval on a canary or a rolling step)"),
                           ("reject", "reject a change or plan id")):
        s = sub.add_parser(name, parents=[common, remote], help=helptext)
        s.add_argument("id", help="change id or plan id from `reconciler plan`; with --env, an application")
        s.add_argument("--env", metavar="ENV", help=f"{name} VERSION of application ID for environment ENV "
                       "(its approval: constraint; docs/environments.md)")
        s.add_argument("--version", dest="app_version", metavar="VERSION", help="with --env: the version to " + name)
        s.add_argument("--comment", default="")
        s.add_argument("--by", default=None, help="who decides (default: the current user; with --server the "
                       "token's name, always)")
        s.set_defaults(func=cmd_decide, decision=name)

    s = sub.add_parser("rollback", parents=[common, remote], help="re-enable the retained previous group of CLUSTER")
    s.add_argument("cluster")
    s.add_argument("--region")
    s.set_defaults(func=cmd_rollback)

    for name in ("pause", "resume"):
        s = sub.add_parser(name, parents=[common, remote], help=f"{name} reconciling an application or cluster")
        s.add_argument("target", help="application or cluster name")
        s.add_argument("--reason", default="")
        if name == "pause":
            s.add_argument("--force", action="store_true",
                           help="pause a name that is not in Git or live state yet (otherwise refused as a typo)")
        s.set_defaults(func=cmd_pause, action=name)

    s = sub.add_parser("promote", help="write a new version of an application into Git, commit and push it "
                       "(exit 0 pushed or already there, 1 refused)",
                       description="For CI after a build or bake: write VERSION at the key the spec declares "
                       "(version, or version_from in values.yaml), commit (signed with --signing-key), and push to "
                       "the tracked branch, fetching and retrying on top when someone pushed first; or push a new "
                       "branch for a pull request with --branch. Refused when the application's spec would not "
                       "load, or when an image given by pattern does not resolve for VERSION in every region. "
                       "The daemon deploys it on its next poll, environment by environment; CI without Git "
                       "credentials can POST /api/v1/promote instead (docs/environments.md).")
    s.add_argument("application", metavar="APP")
    s.add_argument("version", metavar="VERSION")
    s.add_argument("--env", metavar="ENV", help="write the version pinned by environment ENV (its own "
                   "version or version_from) instead of the application's")
    s.add_argument("--message", default="", help="commit message (default: 'Promote APP to VERSION')")
    s.add_argument("--branch", metavar="NAME", help="push a new branch NAME (for a pull request) instead of "
                   "the tracked branch")
    s.add_argument("--signing-key", metavar="FILE", default=os.environ.get("RECONCILER_SIGNING_KEY") or None,
                   help="SSH private key to sign the commit with (ssh-keygen -Y sign; default: "
                   "$RECONCILER_SIGNING_KEY)")
    s.add_argument("--author", default="", metavar="'NAME <EMAIL>'",
                   help="commit author and committer (the identity allowed_signers must know when signing)")
    s.add_argument("--repo", help="repository URL or path (default: the config's)")
    s.add_argument("--config", help="config file (default: $RECONCILER_CONFIG, else built-in defaults)")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    s.set_defaults(func=cmd_promote)

    s = sub.add_parser("freeze", parents=[common, remote], help="stop all changes except rollbacks")
    s.add_argument("--reason", required=True)
    s.set_defaults(func=cmd_freeze, action="freeze")
    s = sub.add_parser("unfreeze", parents=[common, remote], help="lift a freeze set with `reconciler freeze`")
    s.set_defaults(func=cmd_freeze, action="unfreeze", reason="")
    return p


# ---------------------------------------------------------------------------- helpers


def _config(args: argparse.Namespace, *, repo: str | None = None) -> config_mod.Config:
    return config_mod.load_config(
        args.config, repo=repo, branch=getattr(args, "branch", None),
        spec_path=getattr(args, "spec_path", None), state=getattr(args, "state", None),
    )


def _engine(args: argparse.Namespace, *, repo: str | None = None, progress: bool = False,
            one_pass: bool = False) -> Any:
    """``one_pass``: the command evaluates once, so nothing is kept for a next evaluation."""
    from reconciler.runtime import engine as engine_mod

    cfg = _config(args, repo=repo)
    return engine_mod.Engine(cfg, progress=_progress if progress else None,
                             after_step=getattr(args, "after_step", None), remember=not one_pass)


def _remote(args: argparse.Namespace) -> Any:
    from reconciler import remote

    return remote.client(args)


def _quote(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _user(args: argparse.Namespace) -> str:
    if getattr(args, "by", None):
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# ---------------------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    from providers import base as provider_base
    from reconciler.core import escaping
    from reconciler.runtime import providers as providers_mod
    from specs import catalog, loader

    spec_path = args.spec_path or "apps"
    installed = provider_base.installed_names()
    cat = catalog.Catalog(installed)
    limits = None
    if args.config:
        try:
            cfg = _config(args)
        except errors.ConfigError as exc:
            print(str(exc))
            print("1 problem in the config", file=sys.stderr)
            return EXIT_ERROR
        spec_path, limits = args.spec_path or cfg.spec_path, cfg.specs
        cat = providers_mod.catalog_for(cfg, installed, accounts=True)
    desired = loader.load_directory(Path(args.path), spec_path=spec_path, catalog=cat, limits=limits)
    for n in desired.notices:
        print(escaping.visible(f"notice: {n}"), file=sys.stderr)
    if desired.problems:
        for p in desired.problems:
            print(str(p))
        print(f"{len(desired.problems)} problem(s) in {len(desired.broken_files)} file(s)", file=sys.stderr)
        return EXIT_ERROR
    clusters = sum(len(a.clusters) for a in desired.applications.values())
    print(f"ok: {len(desired.applications)} application(s), {clusters} cluster(s)")
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    from specs import schema

    print(json.dumps(schema.json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from reconciler.runtime import pipeline
    from reconciler.source import git as gitsource

    if args.server:
        from reconciler import remote

        return remote.plan(args)
    cfg_repo = args.repo
    eng = _engine(args, repo=cfg_repo, one_pass=True)
    answers = None if args.no_cache else _PlanAnswers(eng.config, args)
    try:
        local = None
        url = eng.config.repo_url
        if (args.ref or args.base) and gitsource.is_local_path(url):
            local = url
        ev = eng.plan_reusing(answers, ref=args.ref, base=args.base, local_repo=local, offline=args.base is not None)
    finally:
        eng.close()
    if isinstance(ev, pipeline.Reused):
        return _replay(args, ev.answer)
    writer = answers.begin() if answers is not None else None
    try:
        code, lines = _write_plan(args, ev, writer)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    for line in lines:
        print(line, file=sys.stderr)
    if writer is not None:
        writer.commit({"plan_id": ev.plan.plan_id, "changes": len(ev.plan.changes), "stderr": lines, "exit": code})
    return code


@contextlib.contextmanager
def _beside(out: str) -> Iterator[str]:
    """A file beside ``out``, renamed over it when the block ends well: a failure never leaves half a plan."""
    partial = f"{out}.partial-{os.getpid()}"
    try:
        yield partial
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _write_plan(args: argparse.Namespace, ev: Any, writer: Any) -> tuple[int, list[str]]:
    """Print the plan, write ``--out``; the stderr lines after it and the exit code (kept with the answer)."""
    from reconciler import delivery, planfile, render
    from reconciler.core import jsontext

    emit = sys.stdout.write if writer is None else writer.tee(sys.stdout)
    plan = ev.plan
    # stdout shows the redacted JSON contract only
    doc = render.render_json(plan, held=ev.held, skipped=ev.outcome.skipped, resource_held=ev.resources_held,
                             resource_skipped=ev.outcome.resource_skipped, lazy=True) if args.format == "json" else None
    if args.out:
        # the saved plan whatever is printed (Terraform's -out): full specs, user data included; written as
        # it is encoded (lazy), never held whole; with --format json the plan JSON is written in the same
        # pass, each change's contract view built and encoded once for both
        with _beside(args.out) as partial:
            with open(partial, "wb") as saved:
                planfile.write_plan(saved, plan, held=ev.held, skipped=ev.outcome.skipped,
                                    show=(doc, emit) if doc is not None else None)
            if writer is not None:
                writer.keep_plan(partial)
    elif doc is not None:
        jsontext.write_pretty(doc, emit, allow_nan=True)
    if doc is not None:
        emit("\n")
    elif args.format == "markdown":
        notes = "\n\n".join(x for x in (render.notes_markdown(ev.held, ev.outcome.skipped, ev.resources_held,
                                                                ev.outcome.resource_skipped),
                                          delivery.path_markdown(ev.desired, plan.changes)) if x)
        parts = [_no_false_match(p, ev) for p in
                 render.render_markdown(plan, max_chars=args.max_comment_chars, notes=notes)]
        emit("\n".join(p if p.endswith("\n") else p + "\n" for p in parts))
    else:
        text = _no_false_match(render.render_text(plan, color=sys.stdout.isatty()), ev)
        notes = _notes(ev)
        emit(text + ("\n" + notes + "\n" if notes else ""))
    sys.stdout.flush()
    if args.out:
        print(_saved_line(plan.plan_id, len(plan.changes), args.out), file=sys.stderr)
    lines: list[str] = []
    if args.format != "text":  # stdout is for a tool or a comment: problems also go where people look
        lines += [str(p) for p in plan.problems]
        lines += [f"notice: {n}" for n in plan.notices]
    unread = _unread(ev)
    lines += [f"error: {line}" for line in unread]
    if plan.problems:
        lines.append(f"{len(plan.problems)} spec problem(s); the other applications were planned")
        return EXIT_ERROR, lines
    if unread:
        return EXIT_ERROR, lines
    return (EXIT_CHANGES if plan.changes or plan.resource_changes else EXIT_OK), lines


def _saved_line(plan_id: str, changes: int, out: str) -> str:
    return f"plan {plan_id}: {changes} change(s) saved to {out} (apply it with `reconciler apply --plan {out}`)"


def _replay(args: argparse.Namespace, entry: Any) -> int:
    """Print what the earlier run printed, write its saved plan to ``--out``, exit as it did."""
    try:
        entry.write_stdout(sys.stdout)
        if args.out:
            with _beside(args.out) as partial:
                entry.save_plan(partial)
    finally:
        entry.close()
    meta = entry.meta
    if args.out:
        print(_saved_line(meta["plan_id"], meta["changes"], args.out), file=sys.stderr)
    for line in meta["stderr"]:
        print(line, file=sys.stderr)
    return int(meta["exit"])


class _PlanAnswers:
    """``plan``'s persisted answers (``reconciler.state.plancache``): asked with the digest of every input."""

    def __init__(self, config: Any, args: argparse.Namespace) -> None:
        from reconciler.state import plancache

        self.cache = plancache.PlanCache.beside(config.state_dir)
        self.config = config
        self.options = {**plancache.stdout_options(sys.stdout), "format": args.format, "out": bool(args.out),
                        "max_comment_chars": args.max_comment_chars if args.format == "markdown" else None}
        self.key: str | None = None

    def __call__(self, digest: str) -> object | None:
        from reconciler.state import plancache

        key = self.key = plancache.key(digest, self.config, self.options)
        entry = self.cache.open(key) if key is not None else None
        if key is not None and entry is not None:
            logging.getLogger("reconciler.plancache").info(
                "inputs unchanged since an earlier plan (%s): its answer is printed again, nothing re-planned",
                key[:12])
        return entry

    def begin(self) -> Any:
        return self.cache.begin(self.key) if self.key is not None else None


_MATCH_CLAIMS = ("No changes: live state matches the desired state.",
                 "**No changes**: live state already matches the desired state.")


def _no_false_match(text: str, ev: Any) -> str:
    """"live state matches" is said only when every live state the plan needed was read."""
    if not ev.live.unreadable:
        return text
    for claim in _MATCH_CLAIMS:
        text = text.replace(claim, "No changes planned, but some live state could not be read: "
                            "those clusters were not planned (see the errors).")
    return text


def _unread(ev: Any) -> list[str]:
    """Live state the plan needed but could not read: those clusters were not planned, so exit 1."""
    return [f"live state of {'/'.join(key)} could not be read, its clusters were not planned: {why}"
            for key, why in sorted(ev.live.unreadable.items())]


def _notes(ev: Any) -> str:
    from reconciler import resource_render
    from reconciler.core import escaping

    lines: list[str] = []
    for change, why in ev.held:
        lines.append(escaping.visible(f"  held: {change.cluster} in {change.region}: {why}"))
    for s in ev.outcome.skipped:
        lines.append(escaping.visible(f"  skipped: {s.cluster} ({s.key}): {s.reason}"))
    lines += resource_render.notes_text(ev.resources_held, ev.outcome.resource_skipped)
    return "\n".join(lines)


class _ApplyGate:
    """``apply``'s say in the pass: the saved plan's checks, then the plan shown and the prompt."""

    def __init__(self, args: argparse.Namespace, verifier: Any) -> None:
        self.args = args
        self.verifier = verifier
        self.declined: int | None = None  # the exit code when nothing was run
        self.unread: list[str] = []

    def source(self, commit: str | None, error: str | None) -> None:
        if self.verifier is not None:
            self.verifier.source(commit, error)
        elif commit is None:
            raise errors.SourceError(error or "no commit to apply")
        elif error:
            print(f"warning: {error}", file=sys.stderr)

    def proceed(self, ev: Any) -> bool:
        from reconciler import render

        if self.verifier is not None:
            self.verifier.proceed(ev)
        print(_no_false_match(render.render_text(ev.plan, color=sys.stdout.isatty()), ev))
        notes = _notes(ev)
        if notes:
            print(notes)
        self.unread = _unread(ev)
        for line in self.unread:
            print(f"error: {line}", file=sys.stderr)
        if not ev.runnable and not ev.resources_runnable:
            self.declined = EXIT_ERROR if ev.held or ev.resources_held or self.unread else EXIT_OK
            return False
        if not self.args.yes:
            if not sys.stdin.isatty():
                raise errors.ReconcilerError("refusing to apply without --yes when stdin is not a terminal")
            answer = input(f"Apply {len(ev.runnable) + len(ev.resources_runnable)} change(s)? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not applied")
                self.declined = EXIT_ERROR
                return False
        return True


def cmd_apply(args: argparse.Namespace) -> int:
    from reconciler import planfile
    from reconciler.runtime import pipeline

    eng = _engine(args, progress=True)
    try:
        verifier = None
        if args.plan:
            try:
                text = Path(args.plan).read_text(encoding="utf-8")
            except OSError as exc:
                raise errors.ReconcilerError(f"{args.plan}: cannot read the saved plan: {exc.strerror}") from exc
            except UnicodeDecodeError as exc:
                raise errors.ReconcilerError(f"{args.plan}: not a saved plan (not UTF-8 text at byte "
                                             f"{exc.start})") from exc
            saved = planfile.load_plan(text, file=args.plan)
            verifier = planfile.Verifier(saved, args.plan, eng.config.branch)
        gate = _ApplyGate(args, verifier)
        result = eng.pipeline.run(pipeline.Request(pipeline.Mode.APPLY, reason="apply", gate=gate, environment=args.env,
                                                   exclude_running=False, settle=True))
        if gate.declined is not None:
            return gate.declined
        ev = result.evaluation
        failed = [r for r in result.results if r.state is not model.ExecState.SUCCEEDED]
        for r in failed:
            print(f"{r.change.cluster} in {r.change.region}: {r.state}: {r.error}", file=sys.stderr)
        res_failed = [r for r in result.resource_results if r.state != "succeeded"]
        for rr in res_failed:
            print(f"{rr.change.label} in {rr.change.region}: {rr.state}: {rr.error}", file=sys.stderr)
        total = len(result.results) + len(result.resource_results)
        ok = total - len(failed) - len(res_failed)
        n_held = len(ev.held) + len(ev.resources_held) + result.resource_waiting
        print(f"Applied {ok} of {total} change(s)" + (f"; {n_held} held" if n_held else ""))
        return EXIT_ERROR if failed or res_failed or n_held or gate.unread else EXIT_OK
    finally:
        eng.close()


def cmd_run(args: argparse.Namespace) -> int:
    from reconciler import daemon

    return daemon.main(args.config, once=args.once, log_format=args.log_format, state=args.state,
                       branch=args.branch, spec_path=args.spec_path)


def cmd_status(args: argparse.Namespace) -> int:
    if args.server:
        status = _remote(args).get("/api/v1/status")
    else:
        eng = _engine(args, one_pass=True)
        try:
            eng.refresh_status(record_events=False)
            status = eng.status()
        finally:
            eng.close()
    if args.application:
        status = _only(status, args.application)
    if args.format == "json":
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    if not status.get("commit"):
        print("no reconcile pass has run yet (try `reconciler run --once`)")
        return EXIT_OK
    from reconciler.core import escaping

    v = escaping.visible  # values from specs, policies and clouds: one line each, control characters shown
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["updated_at"]))
    print(f"commit {status['commit'][:8]} (pass at {when})")
    if status.get("source_error"):
        print(v(f"source: {status['source_error']}"))
    if status.get("freeze"):
        print(v(f"FROZEN by {status['freeze'].get('by')}: {status['freeze'].get('reason')}"))
    for name, app in sorted(status.get("applications", {}).items()):
        conds = ", ".join(f"{c['type']} ({c['reason']})" for c in app["conditions"])
        print(f"\n{v(name)}: {conds}")
        for c in app["conditions"]:
            if c["type"] != "Ready":
                print(f"    {v(c['message'])}")
        for g in sorted(status.get("server_groups", []), key=lambda g: (g["cluster"], g["region"], g["server_group"])):
            if g.get("application") != name:
                continue
            state = "enabled " if g["enabled"] else "disabled"
            cap = g["capacity"]
            print(v(f"  {g['region']:<14} {g['server_group']:<32} {state} {g['healthy']}/{cap['desired']} healthy "
                    f"image={g['image']}"))
        for r in status.get("resources", []):
            if name in r["applications"]:
                attached = ", ".join(g["server_group"] for g in r["server_groups"]) or "no server group"
                owner = "" if r["managed"] else " (not managed)"
                print(v(f"  {r['region']:<14} {r['kind'].replace('_', ' ')} {r['name']}{owner}: {r['health']} "
                        f"{r['healthy']}/{r['instances']} healthy, attached: {attached}"))
        readings = [r for r in (status.get("canaries") or {}).get("readings", []) if r["application"] == name]
        for r in reversed(readings[:5]):  # the latest five, oldest first
            print(v(f"  {r['region']:<14} {r['message']}"))
        for key, look in sorted((status.get("automation") or {}).items()):  # APP, or APP/ENV for an environment's
            if key.split("/", 1)[0] == name:
                from reconciler import delivery

                print(v(delivery.automation_line(look)))
        if name in (status.get("pipelines") or {}):
            from reconciler import delivery

            print("\n".join(delivery.status_lines(name, status["pipelines"][name])))
    for name, p in sorted((status.get("paused") or {}).items()):
        print()
        print(v(f"paused: {name} by {p['by']} {p.get('reason', '')}"))
    running = [e for e in status.get("executions", []) if e["state"] == model.ExecState.RUNNING]
    if running:
        print("\nrunning:")
        for e in running:
            print(f"  {e['id']} {e['action']} {e['cluster']} {e['region']}")
    targets = (status.get("notifications") or {}).get("targets") or {}
    if targets:
        print("\nnotifications:")
        for name, t in sorted(targets.items()):
            print(f"  {name:<16} {t['type']:<8} {'FAILING' if t['failing'] else 'ok':<8} {t['pending']} pending, "
                  f"{t['delivered']} delivered, {t['dropped']} dropped")
            if t["failing"]:
                print(f"    last error: {t['last_error']}")
    if status.get("ha"):
        from reconciler.runtime import ha

        print("\n" + "\n".join(v(line) for line in ha.Coordinator.render(status["ha"])))
    return EXIT_OK


def _only(status: dict[str, Any], name: str) -> dict[str, Any]:
    """The status of one application (``reconciler status APP``); an unknown name is an error naming the known."""
    apps = status.get("applications") or {}
    if name not in apps:
        import difflib

        near = difflib.get_close_matches(name, sorted(apps), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(near)}?" if near else f"known: {', '.join(sorted(apps)) or 'none'}"
        raise errors.ReconcilerError(f"no application named {name!r} in the status; {hint}")
    return {**status, "applications": {name: apps[name]},
            "pipelines": {k: p for k, p in (status.get("pipelines") or {}).items() if k == name},
            "server_groups": [g for g in status.get("server_groups") or [] if g.get("application") == name],
            "held": [h for h in status.get("held") or [] if h["key"].rsplit("/", 1)[-1].split("-")[0] == name],
            "executions": [e for e in status.get("executions") or [] if e.get("application") == name],
            "automation": {k: a for k, a in (status.get("automation") or {}).items() if k.split("/", 1)[0] == name},
            "canaries": {"in_progress": [c for c in (status.get("canaries") or {}).get("in_progress", [])
                                         if c["canary"].split("-")[0] == name],
                         "readings": [r for r in (status.get("canaries") or {}).get("readings", [])
                                      if r["application"] == name]}}


def cmd_history(args: argparse.Namespace) -> int:
    if args.server:
        doc = _remote(args).get("/api/v1/history", limit=args.limit, application=args.application)
        events, execs = doc["events"], doc["executions"]
    else:
        eng = _engine(args)
        try:
            events = eng.store.history(limit=args.limit, application=args.application)
            execs = eng.store.executions(limit=args.limit, application=args.application)
        finally:
            eng.close()
    if args.format == "json":
        print(json.dumps({"events": events, "executions": execs}, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    from reconciler.core import escaping

    for e in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        where = " ".join(x for x in (e["application"], e["cluster"], e["region"]) if x)
        print(escaping.visible(f"{when} {e['kind']:<22} {where:<40} {e['message']}"))
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    from reconciler.notifications import stream
    from reconciler.state import store as store_mod

    store = store_mod.Store(_config(args).state_url)

    def show(rows: list[dict[str, Any]]) -> None:
        for e in rows:
            if args.format == "json":
                print(json.dumps(stream.event_doc(e), sort_keys=True, default=str))
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
                where = " ".join(x for x in (e["application"], e["cluster"], e["region"]) if x)
                print(f"{e['id']:>7} {when} {e['kind']:<22} {where:<40} {e['message']}")
        sys.stdout.flush()

    try:
        if args.after is not None:
            after = args.after
        else:
            recent = store.history(limit=max(args.limit, 1), application=args.application, kinds=args.kind)
            after = (min(e["id"] for e in recent) - 1) if recent and args.limit > 0 else store.last_event_id()
        for rows in stream.follow(store, after, application=args.application, kinds=args.kind):
            show(rows)
            if not args.follow and len(rows) < stream.BATCH:
                break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `reconciler events --follow | head -n1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        store.close()
    return EXIT_OK


def cmd_decide(args: argparse.Namespace) -> int:
    if args.env or args.app_version:
        return _decide_environment(args)
    if args.server:
        from reconciler import remote

        remote.refuse_local_only(args, "--by")
        row = _remote(args).post(f"/api/v1/{args.decision}/{_quote(args.id)}", {"comment": args.comment})
    else:
        eng = _engine(args)
        try:
            fn = eng.approve if args.decision == "approve" else eng.reject
            row = fn(args.id, by=_user(args), comment=args.comment)
        finally:
            eng.close()
    print(f"{row['id']} {row['decision']} by {row['by']} (valid until "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row['expires_at']))})")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    from reconciler.runtime import promote

    cfg = config_mod.load_config(args.config, repo=args.repo)
    req = promote.Request(args.application, args.version, environment=args.env, message=args.message,
                          branch=args.branch, signing_key=Path(args.signing_key) if args.signing_key else None,
                          author=args.author)
    out = promote.promote(cfg, req)
    if out.pushed is None:
        print(f"{args.application} is already at {args.version} in {out.file} ({out.key}); nothing to push")
        return EXIT_OK
    p = out.pushed
    tries = f" after {p.attempts} attempts" if p.attempts > 1 else ""
    signed = " signed" if p.signed else ""
    print(f"{args.application}: {out.previous or '-'} -> {args.version} in {out.file} ({out.key}); "
          f"{signed.strip() or 'unsigned'} commit {p.commit[:12]} pushed to {p.branch}{tries}")
    if args.branch:
        print(f"open a pull request from {args.branch} into {cfg.branch}")
    return EXIT_OK


def _decide_environment(args: argparse.Namespace) -> int:
    if not (args.env and args.app_version):
        raise errors.ReconcilerError(f"{args.decision} --env ENV needs --version VERSION too (and the reverse)")
    decision = "approved" if args.decision == "approve" else "rejected"
    if args.server:
        from reconciler import remote

        remote.refuse_local_only(args, "--by")
        row = _remote(args).post(f"/api/v1/environments/{_quote(args.id)}/{_quote(args.env)}/{args.decision}",
                                 {"version": args.app_version, "comment": args.comment})
    else:
        eng = _engine(args)
        try:
            row = eng.decide_environment(args.id, args.env, args.app_version, decision, by=_user(args),
                                         comment=args.comment)
        finally:
            eng.close()
    print(f"{row['id']} {row['decision']} by {row['by']}")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    if args.server:
        doc = _remote(args).post(f"/api/v1/rollback/{_quote(args.cluster)}", {"region": args.region})
        print(f"rollback of {args.cluster} started in {', '.join(doc['regions'])} by {doc['by']}; {args.cluster} is "
              f"paused: follow it with `reconciler history --server ...`, revert the deploy in Git, then "
              f"`reconciler resume {args.cluster}`")
        return EXIT_OK
    eng = _engine(args, progress=True)
    try:
        results = eng.rollback(args.cluster, region=args.region, by=_user(args))
    finally:
        eng.close()
    failed = [r for r in results if r.state is not model.ExecState.SUCCEEDED]
    print(f"rolled back {len(results) - len(failed)} of {len(results)} region(s); {args.cluster} is paused: "
          "revert the deploy in Git, then `reconciler resume " + args.cluster + "`")
    return EXIT_ERROR if failed else EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    if args.server:
        body = {"reason": args.reason, "force": bool(getattr(args, "force", False))}
        _remote(args).post(f"/api/v1/{args.action}/{_quote(args.target)}", body)
    else:
        eng = _engine(args)
        try:
            if args.action == "pause":
                eng.pause(args.target, by=_user(args), reason=args.reason, force=args.force)
            else:
                eng.resume(args.target, by=_user(args))
        finally:
            eng.close()
    print(f"{args.target} {'paused' if args.action == 'pause' else 'resumed'}")
    return EXIT_OK


def cmd_freeze(args: argparse.Namespace) -> int:
    if args.server:
        _remote(args).post(f"/api/v1/{args.action}", {"reason": args.reason} if args.action == "freeze" else {})
    else:
        eng = _engine(args)
        try:
            if args.action == "freeze":
                eng.freeze(by=_user(args), reason=args.reason)
            else:
                eng.unfreeze(by=_user(args))
        finally:
            eng.close()
    print("frozen: only rollbacks run" if args.action == "freeze" else "freeze lifted")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
