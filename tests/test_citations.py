"""Every citation of a CockroachDB fact names something a reader can open.

A comment or docstring that relies on a CockroachDB fact cites a docs URL
(https://www.cockroachlabs.com/docs/...), a CockroachDB source path or issue
(https://github.com/cockroachdb/cockroach/...), or a file under
``tests/crdb_facts/``. This test fails on the forms that point at nothing a
checkout or a wheel holds: the project's private fact collection
(``crdb-facts/...``), a bare fact-file name, design notes (``DESIGN.md``) and
tracker numbers without a URL (``issue 4``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("sqlalchemy_crdb_async", "tests", "benchmarks", "examples")
FACTS = ROOT / "tests" / "crdb_facts"
#: Names of files in the private fact collection; cited only as tests/crdb_facts/<name>.
FACT_FILES = (
    "builtins.json|catalog_tables.json|errors.json|errors_more.json|grammar.md|"
    "indexes.json|information_schema_columns.json|pg_catalog_support.md|"
    "session_reset.md|session_vars.md|version.json|versions.md"
)
UNOPENABLE = re.compile(
    r"crdb-facts"  # the private collection (the copies live in tests/crdb_facts/)
    r"|DESIGN\.md"
    r"|(?<![\w/#])issue [0-9]+\b"  # "issue 4"; a URL .../issues/4 is fine
    r"|\bcockroach#[0-9]+"  # shorthand for a URL
    r"|(?<![\w/])(?:" + FACT_FILES.replace(".", r"\.") + r")\b(?!\")"
)
# A fact file named alone is fine where the line also says where it lives, and
# in tests that load it by name from tests/crdb_facts/ (facts.load("x.json")).
_LOCATED = re.compile(r"tests/crdb_facts/|crdb_facts|facts\.load|FACTS_DIR")


def _sources() -> list[Path]:
    this = Path(__file__).resolve()
    return [
        path
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        # hidden folders hold what is not ours: .venv, .nox, and
        # benchmarks/.bench-cache (sqlalchemy-cockroachdb, installed on demand)
        if path.resolve() != this
        and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    ]


def unopenable_citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each citation a reader cannot open."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in UNOPENABLE.finditer(line):
            bare_file = match.group(0).endswith((".json", ".md"))
            if bare_file and match.group(0) != "DESIGN.md" and _LOCATED.search(line):
                continue
            found.append((number, line.strip()))
            break
    return found


def test_the_checker_flags_each_unopenable_form() -> None:
    bad = [
        "# (crdb-facts/session_vars.md section 3)",
        "See also: DESIGN.md section 5; issue 4.",
        "    # (session_vars.md s.7)",
        "# crdb-facts information_schema_columns.json identity_v25",
        "# no binary json codec (cockroach#9990)",
    ]
    good = [
        "# (tests/crdb_facts/session_vars.md section 3)",
        "# https://github.com/cockroachdb/cockroach/issues/9990",
        "# https://www.cockroachlabs.com/docs/v25.2/set-vars",
        'data = facts.load("errors.json")',
    ]
    assert [n for n, _ in unopenable_citations("\n".join(bad))] == [1, 2, 3, 4, 5]
    assert unopenable_citations("\n".join(good)) == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_citations_can_be_opened(path: Path) -> None:
    found = unopenable_citations(path.read_text(encoding="utf-8"))
    assert found == [], (
        f"{path.relative_to(ROOT)} cites what a reader cannot open; cite a docs "
        "URL, a github.com/cockroachdb/cockroach path or issue URL, or copy the "
        "fact file into tests/crdb_facts/ and cite that path: "
        + "; ".join(f"line {n}: {line}" for n, line in found)
    )


def test_cited_fact_files_exist() -> None:
    cited = set()
    for path in _sources():
        cited |= set(
            re.findall(r"tests/crdb_facts/([\w.]+\.(?:json|md))", path.read_text())
        )
    missing = sorted(name for name in cited if not (FACTS / name).is_file())
    assert missing == []
