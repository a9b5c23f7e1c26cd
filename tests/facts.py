"""Access to ../shared/crdb-facts: the golden data of what real CockroachDB servers say.

The folder sits beside the checkout (``<checkout>/../shared/crdb-facts``) on
developer machines and in CI. ``CRDB_FACTS_DIR`` overrides the location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def facts_dir() -> Path:
    env = os.environ.get("CRDB_FACTS_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "crdb-facts"
    if not path.is_dir():
        raise FileNotFoundError(
            f"crdb-facts not found at {path}; set CRDB_FACTS_DIR to the folder"
        )
    return path


def load(name: str) -> Any:
    with open(facts_dir() / name, encoding="utf-8") as f:
        return json.load(f)
