"""docs/notifications.md and the shipped example config are copied by users: every example must load and agree."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import yaml

from reconciler.config import settings as config_mod
from reconciler.notifications import kinds, messages, senders
from specs import policy_file

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def test_every_config_example_loads(tmp_path) -> None:
    configs = [b for b in _blocks("yaml") if "notifications" in (yaml.safe_load(b) or {})]
    assert len(configs) == 2
    for i, block in enumerate(configs):
        path = tmp_path / f"config{i}.yaml"
        path.write_text(f"repo: {{url: {tmp_path}}}\nstate: sqlite:///{tmp_path}/state.db\n{block}")
        cfg = config_mod.load_config(path)
        assert cfg.notifications.enabled
    full = config_mod.load_config(tmp_path / "config1.yaml").notifications
    assert {t.type for t in full.targets} == {"slack", "teams", "webhook", "email", "apprise", "github", "gitlab"}


def test_every_policies_example_is_valid_and_names_only_configured_targets() -> None:
    rules = [b for b in _blocks("yaml") if "notifications" not in (yaml.safe_load(b) or {})]
    assert len(rules) == 2
    for block in rules:
        settings, problems = policy_file.load_policy_file(block, file="apps/policies.yaml")
        assert problems == []
        for layer in (settings.defaults, *settings.criticality.values(), *settings.applications.values()):
            for rule in layer.get("notify", []):
                assert set(rule["targets"]) <= {"deploys", "mail", "phones"}


def test_the_example_config_shipped_for_systemd_loads() -> None:
    cfg = config_mod.load_config(ROOT / "systemd" / "config.example.yaml")
    assert [t.type for t in cfg.notifications.targets] == ["slack", "github"]


def test_the_event_table_lists_every_kind_and_the_webhook_example_has_every_field() -> None:
    table = DOC.split("## Events and what each carries", 1)[1].split("\n\n", 2)[1]
    listed = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert sorted(listed) == sorted(kinds.KINDS) and len(listed) == len(kinds.KINDS)
    (example,) = [json.loads(b) for b in _blocks("json")]
    n = messages.Notification(1, "deploy_failed", "deploy_failed", 0.0, "checkout", "c", "t", "x")
    assert set(example) == set(n.doc())


def test_the_signature_recipe_accepts_what_the_webhook_sender_signs() -> None:
    (recipe,) = _blocks("python")
    scope: dict[str, object] = {}
    exec(recipe, scope)  # noqa: S102 - the documented recipe itself
    body = b'{"kind": "deploy_failed"}'
    header = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert scope["signature_ok"](body, header, b"k")  # type: ignore[operator]
    assert not scope["signature_ok"](body + b" ", header, b"k")  # type: ignore[operator]
    assert "X-Reconciler-Signature-256" in DOC and senders.WebhookSender.__doc__
