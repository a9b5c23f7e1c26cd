"""The golden data: what real CockroachDB servers answer (tests/crdb_facts/).

``load("version.json")`` returns the parsed file. Each record names its source
(a CockroachDB logic test or Go file at a commit, a docs page, an issue); see
tests/crdb_facts/README.md. Tests read these copies only, so a plain clone
runs every golden test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FACTS_DIR = Path(__file__).resolve().parent / "crdb_facts"


def load(name: str) -> Any:
    with open(FACTS_DIR / name, encoding="utf-8") as f:
        return json.load(f)
