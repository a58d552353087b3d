"""Saving the status document: once per evaluation, not once per pass.

A daemon pass on an unchanged commit with nothing changed live reuses its last evaluation
(``core.memo``), so its status document would be the last one again but for the pass's time and
reason. Building and writing it cost more than the rest of such a pass (every change, every live
group, as JSON), so such a pass writes only a stamp (``keys.STATUS_STAMP``) and ``status.stamped``
gives readers the document it stands for, byte for byte.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.notifications import history as notify_history
from reconciler.runtime import status
from reconciler.state import keys
from reconciler.state import store as store_mod

if TYPE_CHECKING:
    from reconciler.runtime.pipeline import Evaluation


class StatusRecorder:
    """Writes the status document of each new evaluation, and only the stamp of a reused one."""

    def __init__(self, store: store_mod.Store) -> None:
        self.store = store
        self.built = 0
        """Documents built and written (tests assert that an unchanged pass adds none)."""
        self._last: tuple[Evaluation, dict[str, Any], bool] | None = None  # evaluation, file_apps, notified
        self._token = ""  # names the stamp this process wrote with its last document
        self._built_at = 0.0  # that document's time

    def save(self, ev: Evaluation, *, reason: str, now: float, notify: bool) -> None:
        file_apps: dict[str, Any] = self.store.get(keys.FILE_APPS, {}) or {}
        last = self._last
        if (last is not None and last[0] is ev and last[1] == file_apps and (last[2] or not notify)
                and self._stamp_is_mine()):
            # the same evaluation gives the same document but for these two values (and nothing new to
            # notify: the transitions were recorded from that very document)
            self.store.put(keys.STATUS_STAMP, self._stamp(now, reason, built_at=self._built_at), now)
            return
        doc = status.build(ev, commit=ev.desired.commit, source_error=ev.source_error, reason=reason, now=now,
                           file_apps=file_apps)
        self.store.put_text(keys.STATUS, status.encode(doc), now)
        self._token = uuid.uuid4().hex
        self._built_at = now
        self.store.put(keys.STATUS_STAMP, self._stamp(now, reason, built_at=now), now)
        self.built += 1
        self._last = (ev, file_apps, notify)
        if notify:  # approvals now awaited, denials, stalls, source errors: once, when they begin
            notify_history.record_transitions(self.store, doc, now)

    def _stamp(self, now: float, reason: str, *, built_at: float) -> Mapping[str, Any]:
        return {"token": self._token, "built_at": built_at, "updated_at": now, "reason": reason}

    def _stamp_is_mine(self) -> bool:
        """No other process (``reconciler status``, a second daemon) wrote a document since this one did."""
        stamp = self.store.get(keys.STATUS_STAMP) or {}
        return bool(self._token) and stamp.get("token") == self._token
