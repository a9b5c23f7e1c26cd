"""``--rtt-ms``: the option, and the delay proxy process against the test server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import pytest

from benchmarks._harness.cli import build_parser, config_from
from benchmarks._harness.rtt import DelayProxy
from benchmarks._harness.variants import asyncpg_connect_kwargs

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def test_option_reaches_the_config() -> None:
    assert config_from(build_parser().parse_args(["--rtt-ms", "1.5"])).rtt_ms == 1.5
    assert config_from(build_parser().parse_args([])).rtt_ms == 0


@pytest.mark.parametrize("bad", ["-1", "nan", "ms", "1e9"])
def test_option_refuses_bad_values(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--rtt-ms", bad])
    assert "--rtt-ms" in capsys.readouterr().err


async def test_proxy_process_forwards(crdb_url: URL) -> None:
    with DelayProxy(crdb_url, 2.0) as proxy:
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(proxy.url(crdb_url)))
        try:
            assert await conn.fetchval("SELECT 6 * 7") == 42
        finally:
            await conn.close()
        assert proxy.port != crdb_url.port


def test_non_loopback_target_is_refused(crdb_url: URL) -> None:
    with (
        pytest.raises(RuntimeError, match="did not start"),
        DelayProxy(crdb_url.set(host="10.9.8.7"), 1.0),
    ):
        pass
