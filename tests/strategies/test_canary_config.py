"""``analysis.prometheus`` in the config: parsed once, every mistake named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import settings as config_mod
from reconciler.core import errors


def _load(tmp_path: Path, analysis: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n{analysis}", encoding="utf-8")
    return config_mod.load_config(path)


def test_the_prometheus_address_timeout_and_credentials_come_from_the_config(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    cfg = _load(tmp_path, f"analysis:\n  prometheus: {{url: 'http://127.0.0.1:9090/', timeout: 3s, "
                          f"token_file: {token}}}\n")
    prom = cfg.prometheus  # type: ignore[attr-defined]
    assert (prom.url, prom.timeout_s, prom.token_file) == ("http://127.0.0.1:9090", 3.0, token)
    assert _load(tmp_path, "").prometheus is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "expected"), [
    ("analysis:\n  prometheus: {url: 'ftp://x'}\n",
     ":3: analysis.prometheus.url: required: an http:// or https:// URL, got 'ftp://x'"),
    ("analysis:\n  prometheus: {url: 'http://x', tokens: y}\n", ":3: analysis.prometheus.tokens: unknown"),
    ("analysis:\n  graphite: {}\n", ":3: analysis.graphite: unknown"),
    ("analysis:\n  prometheus: {url: 'http://x', username: u}\n",
     ":3: analysis.prometheus: username and password_file go together (HTTP basic auth)"),
])
def test_a_bad_analysis_section_is_refused_naming_its_field(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(errors.ConfigError) as err:
        _load(tmp_path, body)
    assert expected in str(err.value), str(err.value)
