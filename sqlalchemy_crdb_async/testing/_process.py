"""Stopping a test server process: a polite signal, then SIGKILL after a wait."""

from __future__ import annotations

import subprocess


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
