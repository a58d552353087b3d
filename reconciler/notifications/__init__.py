"""Telling people and their tools what happened: chat and mail notifications, commit statuses, the event stream.

The subsystem reads the history (the ``events`` table every ``Store.record``
call writes) and never sits in a deploy's path:

- ``history`` records the few events the core does not (a deploy per
  application, status transitions such as "waiting for approval");
- ``kinds`` names the events users select in ``policies.yaml`` (``notify:``);
- ``settings`` parses the ``notifications:`` config section at load;
- ``messages`` turns one history row into a short notification;
- ``outbox`` is the durable queue: one row per (event, target);
- ``senders`` speak Slack, Teams, webhooks, email, apprise, GitHub and GitLab;
- ``worker`` feeds the outbox and delivers it in threads of its own;
- ``stream`` serves the history as server-sent events.

This file imports nothing so that ``specs`` may import ``kinds`` without the I/O modules.
"""
