"""Logging: readable in a terminal, one JSON object per line under systemd; secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

CONTEXT_FIELDS = ("application", "cluster", "region", "commit", "execution_id")
_SECRET = re.compile(r"(?i)(bearer\s+|token[=:]\s*|secret[=:]\s*|password[=:]\s*)[^\s,;\"']+")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
MIN_SECRET_LENGTH = 6
"""Shorter values are not registered: replacing them everywhere would mangle ordinary text."""

_secrets: tuple[str, ...] = ()  # longest first; replaced whole, so readers need no lock
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Redact this exact value from every log line and stored message from now on (tokens read from files)."""
    global _secrets  # noqa: PLW0603 - one registry per process: every log handler and store write reads it
    value = value.strip()
    if len(value) >= MIN_SECRET_LENGTH and value not in _secrets:
        with _secrets_lock:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


_done: tuple[tuple[str, ...], dict[str, str]] = ((), {})
"""The secrets in force and texts already redacted with them: a pass records the same hold reason for
thousands of changes, and two regular expressions over each cost more than the rest of recording them."""
_DONE_MAX = 4096
_DONE_CHARS = 1 << 18
"""What the remembered texts may hold in all: a new commit records one message and one detail text per held
application, each new and one to two thousand characters long, which kept 5 MB alive between passes at
10,000 clusters when only the entry count bounded them."""
_done_chars = 0


def redact(text: str) -> str:
    """Bearer tokens, ``token=``/``secret=``/``password=`` values, URL passwords and every registered secret."""
    global _done, _done_chars  # noqa: PLW0603 - replaced whole (with the secrets it was made with): no lock
    secrets, done = _done
    if secrets is not _secrets:
        secrets, done = _secrets, {}
        _done = (secrets, done)
        _done_chars = 0
    hit = done.get(text)
    if hit is not None:
        return hit
    out = _patterns(text)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, "[redacted]")
    if len(done) >= _DONE_MAX or _done_chars >= _DONE_CHARS:
        done.clear()
        _done_chars = 0
    done[text] = out
    _done_chars += len(text) + (len(out) if out is not text else 0)
    return out


_SECRET_WORDS = ("bearer", "token", "secret", "password")


def _patterns(text: str) -> str:
    """The two expressions' substitutions, each run only on text that could match it: scanning a
    thousand-character hold message with them costs far more than these substring tests. An ASCII text can
    match ``_SECRET`` only if its lower case holds one of its words (outside ASCII, case folding matches more,
    e.g. U+017F for ``s``: such text always runs it), and ``_URL_PASSWORD`` only with ``://`` and ``@``."""
    out = text
    if not text.isascii() or any(w in text.lower() for w in _SECRET_WORDS):
        out = _SECRET.sub(r"\1[redacted]", out)
    if "://" in out and "@" in out:
        out = _URL_PASSWORD.sub(r"\1[redacted]@", out)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value:
                doc[key] = value
        if record.exc_info:
            doc["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, sort_keys=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None))
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{when} {record.levelname:<7} {redact(record.getMessage())}" + (f"  [{ctx}]" if ctx else "")
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger that carries application, cluster, region, commit and execution id on every record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def context(logger: logging.Logger, **fields: str) -> ContextAdapter:
    return ContextAdapter(logger, {k: v for k, v in fields.items() if v})


def choose_format(fmt: str) -> str:
    if fmt != "auto":
        return fmt
    under_systemd = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    return "json" if under_systemd and not sys.stderr.isatty() else "text"


class RedactFilter(logging.Filter):
    """Redacts bearer tokens and ``token=``/``secret=``/``password=`` values before any handler sees them.

    The formatters redact again (exception text, records from other handlers): belt and braces.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def parse_level(level: int | str) -> int:
    """``info``/``DEBUG``/``20`` -> a logging level; raises ValueError naming the bad value."""
    if isinstance(level, int):
        return level
    text = str(level).strip()
    if text.isdigit():
        return int(text)
    value = logging.getLevelName(text.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error)")
    return value


def setup_logging(fmt: str = "auto", level: int | str = logging.INFO) -> None:
    """One stderr handler for the process: journald captures stderr under systemd."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if choose_format(fmt) == "json" else TextFormatter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level))
    for noisy in ("apscheduler", "waitress", "botocore", "urllib3", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


setup = setup_logging


def set_level(level: int | str) -> None:
    """Change the root level at runtime (SIGHUP reload)."""
    logging.getLogger().setLevel(parse_level(level))
