"""Every Python block in README.md runs as written, or says it is an excerpt.

Each complete program (see ``tests/readme.py`` for the kinds) is saved to a
file in an empty folder and run as ``python -W error <file>`` with
``DATABASE_URL`` pointing at a fresh database on the test server, as a reader
who exported the line ``python -m sqlalchemy_crdb_async.server`` printed would
run it; it must exit 0 without a warning. Programs that serve HTTP (FastAPI)
call their app in process, through httpx's ASGI transport, so no server is
left running. The test file block runs in
``tests/testing/test_plugin_first_run.py``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from .readme import Block, blocks, run_python

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy_crdb_async.testing import TestServer

BLOCKS = blocks()
PROGRAMS = [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == "program"]


def test_the_readme_has_programs_and_the_finder_sees_them() -> None:
    assert len(PROGRAMS) >= 5
    assert any(b.heading == "Quickstart" for b in BLOCKS if b.kind == "program")


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS])
def test_each_block_is_a_program_a_test_file_or_an_excerpt(block: Block) -> None:
    """A block that is neither marked nor complete would fail its run below;
    this says what is missing in words a README editor can act on."""
    if block.kind != "program":
        return
    first = block.code.split("\n", 1)[0]
    missing = [
        what
        for what, needed in (
            ("import asyncio", r"^import asyncio$"),
            ("the URL from DATABASE_URL", r"os\.environ(\.get\(|\[)\s*.DATABASE_URL"),
            ("asyncio.run(...)", r"^\s*asyncio\.run\("),
        )
        if not re.search(needed, block.code, re.M)
    ]
    assert not missing, (
        f"README line {block.line} ({block.heading}, first line {first!r}) is not "
        f"a complete program: it lacks {', '.join(missing)}. Make it one, or start "
        "it with '# excerpt: <of what>'."
    )


def test_the_finder_tells_the_kinds_apart() -> None:
    text = (
        "# Title\n\n## A\n\n```python\n# excerpt: part of A\nx = 1\n```\n\n"
        "```bash\n# not a heading\n```\n\n"
        "```python\n# test_a.py\ndef test_a(): pass\n```\n\n"
        "```python\nimport asyncio\n```\n"
    )
    found = blocks(text)
    assert [(b.kind, b.heading, b.line) for b in found] == [
        ("excerpt", "A", 6),
        ("test file", "A", 15),
        ("program", "A", 20),
    ]
    assert found[1].file_name == "test_a.py"


@pytest.fixture
def fresh_database(
    crdb_server: TestServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The URL of a database of the block's own, as the server command prints it."""
    name = "readme_" + request.node.callspec.id.split("-", 1)[0].lower()
    server, extensions = crdb_server, ()
    if re.search(r"\bVECTOR\b", request.node.callspec.params["block"].code):
        # The Vectors section needs a server with the VECTOR type (CockroachDB,
        # or PostgreSQL with pgvector, as its text says).
        server = request.getfixturevalue("pgvector_server")
        extensions = ("vector",)
    url = server.create_database(name, extensions=extensions)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        server.drop_database(name)


@pytest.mark.parametrize("block", PROGRAMS)
def test_the_program_runs(block: Block, fresh_database: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code)
    done = run_python(
        ["-W", "error", str(script)], tmp_path, {"DATABASE_URL": fresh_database}
    )
    assert done.returncode == 0, (
        f"README line {block.line} ({block.heading}) exited {done.returncode}:\n"
        f"{done.stderr}"
    )
    assert "Warning" not in done.stderr, done.stderr
