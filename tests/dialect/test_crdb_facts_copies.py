"""The golden-data copies in tests/crdb_facts/ match the shared collection."""

from __future__ import annotations

import pytest

from tests import facts

COPIES = sorted(
    p.name
    for p in facts.FACTS_DIR.iterdir()
    if p.suffix in (".json", ".md") and p.name != "README.md"
)


def test_the_copies_exist() -> None:
    assert set(COPIES) >= {
        "builtins.json",
        "catalog_tables.json",
        "errors.json",
        "grammar.md",
        "indexes.json",
        "information_schema_columns.json",
        "pg_catalog_support.md",
        "version.json",
        "versions.md",
    }


@pytest.mark.parametrize("name", COPIES)
def test_copy_matches_the_shared_collection(name: str) -> None:
    shared = facts.SHARED_DIR / name
    if not shared.is_file():
        pytest.skip(
            f"needs the shared crdb-facts folder beside the checkout ({shared})"
        )
    assert (facts.FACTS_DIR / name).read_bytes() == shared.read_bytes()
