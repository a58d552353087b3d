"""Redaction remembers the texts it redacted, and a secret registered later is redacted from them too."""

from __future__ import annotations

from reconciler import logs


def test_a_remembered_text_is_redacted_again_once_a_new_secret_is_registered() -> None:
    text = "deploy failed: token=abc123456 while talking to s3cr3t-value-42"
    first = logs.redact(text)
    assert first == "deploy failed: token=[redacted] while talking to s3cr3t-value-42"
    assert logs.redact(text) == first  # remembered
    logs.register_secret("s3cr3t-value-42")
    assert logs.redact(text) == "deploy failed: token=[redacted] while talking to [redacted]"
    assert logs.redact("https://user:pw@example.com/x") == "https://user:[redacted]@example.com/x"
