"""``--rtt-ms``: every variant's connections through a delay proxy.

A real deployment puts 0.5-2 ms between the application and the database;
loopback puts microseconds, where round trips hardly count. With ``--rtt-ms N``
the benchmark starts :class:`sqlalchemy_crdb_async.testing.FaultProxy` in a
process of its own (so its CPU time is not the client's), and every cell's
connections go through it; setup, checks and statement counting connect
directly. The whole delay is applied on the way to the server (for a
request/response protocol a round trip costs the same either way, and one
timer per round trip instead of two halves the timer rounding: event-loop
timers have about a millisecond's resolution). The setting is recorded in the
JSON (``config.rtt_ms``) and in the table's notes, with the round trip
actually added, measured before the cells (:func:`measure_added_rtt_ms`).

Run alone (what the benchmark does): ``python -m benchmarks._harness.rtt HOST
PORT RTT_MS`` prints the proxy's port on its first line and serves until its
standard input closes. Loopback targets only, as FaultProxy requires.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.engine import URL

__all__ = ["DelayProxy", "measure_added_rtt_ms"]

STOP_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 100_000


class DelayProxy:
    """The proxy process for ``url``'s server; a context manager."""

    def __init__(self, url: URL, rtt_ms: float) -> None:
        if url.host is None or url.port is None:
            raise ValueError(f"--rtt-ms needs a URL with host and port, got {url!r}")
        self.target = (url.host, url.port)
        self.rtt_ms = rtt_ms
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DelayProxy:
        host, port = self.target
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, host, str(port), str(self.rtt_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode().strip()
        if not line.isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"the delay proxy did not start (it said {line!r})")
        self.port = int(line)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._process = self._process, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the proxy's signal to stop
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()

    def url(self, url: URL) -> URL:
        """``url`` pointed at the proxy."""
        return url.set(host="127.0.0.1", port=self.port)


async def measure_added_rtt_ms(direct: URL, proxied: URL, samples: int = 100) -> float:
    """Median time of ``SELECT 1`` through the proxy minus directly, in ms."""
    import statistics
    import time

    import asyncpg

    from .variants import asyncpg_connect_kwargs

    medians = []
    for url in (proxied, direct):
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))
        try:
            await conn.fetchval("SELECT 1")
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                await conn.fetchval("SELECT 1")
                times.append(time.perf_counter() - started)
            medians.append(statistics.median(times) * 1000)
        finally:
            await conn.close()
    return medians[0] - medians[1]


async def _serve(host: str, port: int, rtt_ms: float) -> None:
    from sqlalchemy_crdb_async.testing import FaultProxy

    async with FaultProxy(host, port, max_connections=MAX_CONNECTIONS) as proxy:
        proxy.delay_to_server_ms = rtt_ms
        print(proxy.port, flush=True)
        await asyncio.to_thread(sys.stdin.buffer.read)  # until stdin closes


def main(argv: list[str]) -> None:
    host, port, rtt_ms = argv
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(host, int(port), float(rtt_ms)))
    else:
        uvloop.run(_serve(host, int(port), float(rtt_ms)))


if __name__ == "__main__":
    main(sys.argv[1:])
