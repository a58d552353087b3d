"""``http.tokens``, ``http.public_read`` and ``http.session_ttl``: parsed at load into frozen settings, every
mistake named by file:line and field, and the documented example loads as documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reconciler.config import settings as config_mod
from reconciler.core import access, errors
from tests.conftest import ROOT

S = access.Scope


def test_the_example_console_config_loads_with_its_tokens_and_scopes() -> None:
    cfg = config_mod.load_config(ROOT / "examples" / "config-console.yaml")
    http = cfg.http
    assert http.listen == "127.0.0.1:8787" and http.public_read is False and http.session_ttl_s == 8 * 3600
    names = [t.name for t in http.tokens]
    assert names == ["alice", "payments-oncall", "payments-lead", "dashboard"]
    oncall = access.Identity("payments-oncall", http.tokens[1].grants)
    assert oncall.can(S.OPERATE, "payments") and oncall.can(S.READ, "checkout")
    assert not oncall.can(S.OPERATE, "checkout") and not oncall.can(S.APPROVE, "payments")
    lead = access.Identity("payments-lead", http.tokens[2].grants)
    assert lead.can(S.APPROVE, "payments") and lead.can(S.READ, "payments") and not lead.can(S.READ, "cart")
    alice = access.Identity("alice", http.tokens[0].grants)
    assert alice.can_everywhere(S.ADMIN) and not lead.can_everywhere(S.APPROVE)
    assert http.tokens[3].sha256 and http.tokens[3].file is None
    assert http.tokens[0].file == Path("/etc/reconciler/tokens/alice")


def test_the_token_file_is_an_admin_token_named_token_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("http: {listen: '127.0.0.1:0', token_file: tok}\n")
    cfg = config_mod.load_config(tmp_path / "c.yaml")
    (legacy,) = cfg.http.all_tokens()
    assert legacy.name == "token-file" and legacy.file == tmp_path / "tok"
    assert access.Identity(legacy.name, legacy.grants).can_everywhere(S.ADMIN)


BAD = """\
http:
  listen: 127.0.0.1:0
  token_file: tok
  public_read: sometimes
  session_ttl: 5s
  tokens:
    - name: token-file
      file: a
      scopes: {"*": [read]}
    - name: bob
      sha256: abc
      scopes: {"*": [raed]}
    - name: carol
      file: c
      sha256: "0000000000000000000000000000000000000000000000000000000000000000"
      scopes: {"Check*": read, "pay*": []}
    - name: "dave smith"
      file: d
      scopes: {"*": [read]}
      colour: red
    - file: e
    - name: bob
      sha256: "1111111111111111111111111111111111111111111111111111111111111111"
      scopes: "*"
"""


def test_every_token_mistake_is_named_by_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BAD)
    with pytest.raises(errors.ConfigError) as caught:
        config_mod.load_config(path)
    lines = str(caught.value).splitlines()
    expected = [
        (4, "http.public_read: expected true or false"),
        (5, "http.session_ttl: must be at least 1m"),
        (7, "http.tokens[0].name: 'token-file' is the name of http.token_file's token"),
        (11, "http.tokens[1].sha256: expected 64 hex digits"),
        (12, "http.tokens[1].scopes.*: 'raed' is not a scope (allowed: read, approve, operate, admin, promote)"),
        (13, "http.tokens[2]: give exactly one of file: (a file holding the token) or sha256:"),
        (16, "http.tokens[2].scopes: 'Check*' is not an application pattern"),
        (16, "http.tokens[2].scopes.pay*: give at least one scope"),
        (17, "http.tokens[3].name: 'dave smith': use letters, digits and . _ @ -"),
        (20, "http.tokens[3].colour: unknown field"),
        (21, "http.tokens[4].name: required"),
        (22, "http.tokens[5].name: 'bob' is given twice"),
        (24, "http.tokens[5].scopes: required: a mapping of application patterns to scopes"),
    ]
    for line, text in expected:
        assert any(entry.startswith(f"{path}:{line}: {text}") for entry in lines), (line, text, lines)


def test_the_documented_token_config_is_the_example_file() -> None:
    doc = (ROOT / "docs" / "console.md").read_text(encoding="utf-8")
    block = re.search(r"## Tokens and scopes\n\n```yaml\n(.*?)```", doc, re.S)
    assert block, "docs/console.md shows the token config"
    example = yaml.safe_load((ROOT / "examples" / "config-console.yaml").read_text(encoding="utf-8"))
    assert yaml.safe_load(block.group(1)) == {"http": example["http"]}
