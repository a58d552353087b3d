"""The names of the entries the runtime keeps in the store's key-value table.

They are part of the state format: a store written by one release is read by the next, so a
name is never changed, only added.
"""

from __future__ import annotations

LAST_GOOD = "source/last_good_commit"
"""The commit in force: the newest one that was read whole (any source error keeps it)."""

SOURCE_ERROR = "source/error"
"""Why the branch head is not in force (unreadable, force-pushed, over the spec limits), or None."""

FILE_APPS = "specs/file_apps"
"""Spec file -> the application it defined, so a broken file still names its application."""

APP_FILES = "specs/app_files"
"""Application -> the file that last defined it, kept while it has live groups (a rename, not a removal)."""

STATUS = "status/last_pass"
"""The status document of the last evaluation (``runtime.status.build``)."""

STATUS_STAMP = "status/stamp"
"""When and why the document under ``STATUS`` was last found current (``runtime.status.stamped``): a pass
that reuses the last evaluation writes only this, not the whole document again."""

FREEZE = "policy/freeze_switch"
"""The fleet-wide freeze set by ``reconciler freeze``, or None."""

KNOWN_REGIONS = "live/known_regions"
"""``provider/account`` -> regions deployed to before, read on every pass even when no spec names them."""


def unproven(provider: str, account: str, region: str, server_group: str) -> str:
    """A group created by an execution and not yet through its health wait (a rollback may destroy it)."""
    return f"unproven/{provider}/{account}/{region}/{server_group}"


AUTOMATION_PREFIX = "automation/"
"""Image automation: application -> what its last look found (``runtime/automation.py``)."""


def automation(application: str) -> str:
    """When image automation last looked for ``application``'s images, what it found and committed."""
    return f"{AUTOMATION_PREFIX}{application}"
