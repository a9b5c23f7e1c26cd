"""The golden-data copies in tests/crdb_facts/ match the shared collection."""

from __future__ import annotations

import pytest

from tests import facts

COPIES = sorted(p.name for p in facts.FACTS_DIR.glob("*.json"))


def test_the_copies_exist() -> None:
    assert COPIES == [
        "errors.json",
        "errors_more.json",
        "indexes.json",
        "information_schema_columns.json",
        "version.json",
    ]


@pytest.mark.parametrize("name", COPIES)
def test_copy_matches_the_shared_collection(name: str) -> None:
    shared = facts.SHARED_DIR / name
    if not shared.is_file():
        pytest.skip(
            f"needs the shared crdb-facts folder beside the checkout ({shared})"
        )
    assert (facts.FACTS_DIR / name).read_bytes() == shared.read_bytes()
