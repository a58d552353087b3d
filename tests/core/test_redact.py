"""Redaction remembers the texts it redacted, and a secret registered later is redacted from them too."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import logs


def test_a_remembered_text_is_redacted_again_once_a_new_secret_is_registered() -> None:
    text = "deploy failed: token=abc123456 while talking to s3cr3t-value-42"
    first = logs.redact(text)
    assert first == "deploy failed: token=[redacted] while talking to s3cr3t-value-42"
    assert logs.redact(text) == first  # remembered
    logs.register_secret("s3cr3t-value-42")
    assert logs.redact(text) == "deploy failed: token=[redacted] while talking to [redacted]"
    assert logs.redact("https://user:pw@example.com/x") == "https://user:[redacted]@example.com/x"


_PIECES = ["Bearer ", "bearer\t", "TOKEN=", "token: ", "Secret=", "password:", "PassWord=", "\u017fecret=", "toKen=",
           "https://", "git+ssh://", "://", "user", ":", "@", "/", "pw", "x", " ", ",", ";", "'", "\"", "é", "held"]


@given(st.lists(st.sampled_from(_PIECES), max_size=12))
def test_the_expressions_skipped_on_text_they_cannot_match_give_the_same_text(pieces: list[str]) -> None:
    text = "".join(pieces)
    full = logs._URL_PASSWORD.sub(r"\1[redacted]@", logs._SECRET.sub(r"\1[redacted]", text))
    assert logs._patterns(text) == full


class _Counting:
    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern, self.subs = pattern, 0

    def sub(self, repl: str, text: str) -> str:
        self.subs += 1
        return self.pattern.sub(repl, text)


def test_a_hold_message_without_a_secret_word_runs_neither_expression(monkeypatch: pytest.MonkeyPatch) -> None:
    secret, url = _Counting(logs._SECRET), _Counting(logs._URL_PASSWORD)
    monkeypatch.setattr(logs, "_SECRET", secret)
    monkeypatch.setattr(logs, "_URL_PASSWORD", url)
    message = "create app1-s0 in us-east-1, create app1-s0 in eu-west-1: frozen by ops (quiet week) " * 20
    assert logs._patterns(message) == message and (secret.subs, url.subs) == (0, 0)
    assert logs._patterns("see https://u:pw@host/x") == "see https://u:[redacted]@host/x"
    assert (secret.subs, url.subs) == (0, 1)
    folded = "\u017fecret=abc"  # case folding beyond ASCII: U+017F matches "s"
    assert logs._patterns(folded) == "\u017fecret=[redacted]" and secret.subs == 1


def test_remembered_texts_stay_within_their_character_budget() -> None:
    """A new commit records a long, new message and detail per held application: they must not stay alive."""
    for i in range(500):
        assert logs.redact(f"{i}: " + "x" * 2000) == f"{i}: " + "x" * 2000
    _, done = logs._done
    assert sum(len(t) for t in done) <= logs._DONE_CHARS + 2100
    assert logs.redact("token=abc ok") == "token=[redacted] ok"
