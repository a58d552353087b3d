"""systemd's notification protocol (sd_notify), spoken directly: one datagram per message.

No libsystemd needed; a no-op when ``$NOTIFY_SOCKET`` is unset (not under systemd).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("reconciler.notify")  # the name log filters know; kept when the module moved


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        addr = self.address
        target = "\0" + addr[1:] if addr.startswith("@") else addr
        try:
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", addr, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading the configuration")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, if systemd asked for a watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1_000_000 / 2, 0.05)
    except ValueError:
        return None
