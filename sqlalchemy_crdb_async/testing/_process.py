"""Test server processes: is the port free, and stopping one (a polite signal,
then SIGKILL after a wait)."""

from __future__ import annotations

import socket
import subprocess


class PortInUseError(RuntimeError):
    """The port asked for is already taken on 127.0.0.1."""


def require_free_port(port: int) -> None:
    """Raise :class:`PortInUseError` when ``port`` on 127.0.0.1 is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers bind: a port held only by closed connections
        # (TIME_WAIT) is free; one with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise PortInUseError(
                f"port {port} on 127.0.0.1 is already in use ({e.strerror}); "
                "choose another port, or leave it out to get a free one"
            ) from None


def stop_process(
    proc: subprocess.Popen[bytes] | None, signal: int, timeout_s: float
) -> None:
    """Send ``signal`` to a running ``proc``; kill it if it outlives ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
