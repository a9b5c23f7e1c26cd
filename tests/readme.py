"""The README's Python blocks, and what kind each one is.

Every ```` ```python ```` block in README.md is one of:

- an **excerpt**: its first line is ``# excerpt: <of what>``;
- a **test file**: its first line is ``# test_<name>.py`` (run with pytest in an
  empty folder, ``tests/testing/test_plugin_first_run.py``);
- a **program**: everything else. A program is complete: it imports what it
  uses, takes its URL from ``DATABASE_URL`` and runs with ``asyncio.run``
  (``tests/test_readme.py`` runs each one against the test server).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Bound on one run (an interpreter, imports, a few statements; an initdb).
RUN_TIMEOUT_S = 100.0
README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
_EXCERPT = re.compile(r"^# excerpt: \S")
_TEST_FILE = re.compile(r"^# (test_\w+\.py)\b")


@dataclass(frozen=True)
class Block:
    """One Python block of the README."""

    line: int  # where its code starts (1-based)
    heading: str  # the section it is in
    code: str

    @property
    def kind(self) -> str:
        first = self.code.split("\n", 1)[0]
        if _EXCERPT.match(first):
            return "excerpt"
        if _TEST_FILE.match(first):
            return "test file"
        return "program"

    @property
    def file_name(self) -> str:
        """The file name a test file block asks to be saved as."""
        match = _TEST_FILE.match(self.code)
        assert match, f"README line {self.line} is not a test file block"
        return match.group(1)

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"L{self.line}-{slug}"


def blocks(text: str | None = None) -> list[Block]:
    """Every Python block of ``text`` (default: README.md), in order."""
    if text is None:
        text = README.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start(1)]
        headings = re.findall(r"^#+ (.+)$", _outside_fences(before), re.M)
        found.append(
            Block(
                line=before.count("\n") + 1,
                heading=headings[-1] if headings else "top",
                code=match.group(1),
            )
        )
    return found


def _outside_fences(text: str) -> str:
    """``text`` without fenced blocks (a ``# comment`` there is no heading)."""
    return re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S)


def run_python(
    args: list[str], folder: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``folder``, as a reader runs it: this environment
    without the outer pytest's variables, plus ``env``; bounded."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    full_env.update(env)
    try:
        return subprocess.run(
            [sys.executable, *args],
            cwd=folder,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"python {' '.join(args)} still ran after {e.timeout:.0f} s")
