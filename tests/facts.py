"""The golden data: what real CockroachDB servers answer (tests/crdb_facts/).

``load("version.json")`` returns the parsed file. The files are copies of the
shared crdb-facts collection; see tests/crdb_facts/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FACTS_DIR = Path(__file__).resolve().parent / "crdb_facts"
#: The shared collection the copies come from, when it sits beside the checkout.
SHARED_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "crdb-facts"


def load(name: str) -> Any:
    with open(FACTS_DIR / name, encoding="utf-8") as f:
        return json.load(f)
