"""The golden data in tests/crdb_facts/ is complete, listed and sourced."""

from __future__ import annotations

import re

import pytest

from tests import facts

FILES = sorted(
    p.name for p in facts.FACTS_DIR.iterdir() if p.suffix in (".json", ".md")
)
DATA = sorted(name for name in FILES if name != "README.md")
#: How a record names where it comes from.
SOURCE_KEYS = {"source", "sources", "docs_source", "code_source", "url"}


def test_the_copies_exist() -> None:
    assert set(DATA) >= {
        "builtins.json",
        "catalog_tables.json",
        "errors.json",
        "errors_more.json",
        "grammar.md",
        "indexes.json",
        "information_schema_columns.json",
        "pg_catalog_support.md",
        "session_vars.md",
        "version.json",
        "versions.md",
    }


def test_the_readme_lists_every_file() -> None:
    readme = (facts.FACTS_DIR / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.MULTILINE))
    assert listed == set(DATA)


def _has_source(node: object) -> bool:
    if isinstance(node, dict):
        return bool(SOURCE_KEYS & node.keys()) or any(
            _has_source(v) for v in node.values()
        )
    if isinstance(node, list):
        return any(_has_source(v) for v in node)
    return False


@pytest.mark.parametrize("name", [n for n in DATA if n.endswith(".json")])
def test_every_json_file_names_its_sources(name: str) -> None:
    data = facts.load(name)
    assert isinstance(data, dict)
    assert _has_source(data), f"{name}: no record names a source"


@pytest.mark.parametrize("name", [n for n in DATA if n.endswith(".md")])
def test_every_markdown_file_names_its_sources(name: str) -> None:
    text = (facts.FACTS_DIR / name).read_text(encoding="utf-8")
    # Sources are cockroach/docs paths at a commit, or URLs.
    assert re.search(r"@[0-9a-f]{8,}", text) or "https://" in text
