"""The CockroachDB releases the conformance layer checks against, and their facts.

One :class:`Release` per release of the support window (README "Supported
CockroachDB versions"; tests/crdb_facts/versions.md: v24.3, v25.2, v25.4,
v26.2, v26.3). Each names

- the ``SELECT version()`` string and ``server_version`` the dialect detects
  (recorded strings from tests/crdb_facts/version.json where one exists; for
  v26.2 and v26.3 none is recorded, so the recorded v25.2.2 build string is
  used with the release number changed: **INFERRED**, the shape is the one
  every recorded string has, ``derived_parse_regex`` there);
  ``server_version`` is 13.0.0 up to v26.2 and 18.0.0 from v26.3
  (tests/crdb_facts/catalog_v26.md section 1, cockroach PR #168712), so at
  v26.3 SQLAlchemy picks its PostgreSQL-18 catalogue queries;
- its builtin functions (tests/crdb_facts/builtins.json, the documented list
  of that release branch, see :func:`builtins`);
- its catalogue columns (:func:`catalog`):
  tests/crdb_facts/catalog_tables.json era "recent (INFERRED >= v24.3)" up
  to v26.2; at v26.3
  the PostgreSQL-18 layout of tests/crdb_facts/catalog_v26.md section 4
  (``pkg/sql/vtable/pg_catalog.go`` @2a9cb895) replaces the tables it lists,
  and the 15 tables new in that listing are added (columns unknown).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from tests import facts

__all__ = ["RELEASES", "WINDOW", "Release", "builtins", "catalog", "release"]

CATALOG_SCHEMAS = ("pg_catalog", "information_schema")


@dataclass(frozen=True)
class Release:
    """A CockroachDB release of the support window, as the checker sees it."""

    name: str
    version: tuple[int, int]
    #: label in tests/crdb_facts/version.json, or None (string INFERRED)
    recorded_label: str | None
    server_version: str

    @property
    def version_string(self) -> str:
        records = facts.load("version.json")["version_strings"]
        if self.recorded_label is not None:
            return str(
                next(
                    r["version_string"]
                    for r in records
                    if r["label"] == self.recorded_label
                )
            )
        # INFERRED: the recorded v25.2.2 build string, release number changed
        base = next(r for r in records if r["label"] == "v25.2.2 (x86_64)")
        major, minor = self.version
        return str(base["version_string"]).replace("v25.2.2", f"v{major}.{minor}.0")


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("v24.3", (24, 3), "v24.3.0", "13.0.0"),
        Release("v25.2", (25, 2), "v25.2.2 (x86_64)", "13.0.0"),
        Release("v25.4", (25, 4), "v25.4.0-alpha.2 (dev build)", "13.0.0"),
        Release("v26.2", (26, 2), None, "13.0.0"),
        Release("v26.3", (26, 3), None, "18.0.0"),
    )
}
#: Every release in the window, oldest first.
WINDOW = tuple(RELEASES)


def release(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(
            f"unknown CockroachDB release {name!r}; the checker knows {list(WINDOW)}"
        ) from None


@cache
def builtins(name: str) -> tuple[frozenset[str], dict[str, str]]:
    """(functions present at ``name``, verdict of each notable absent one).

    Present: the documented list of that release branch; plus a function both
    in the complete 2026 registry (cockroach
    ``pkg/sql/sem/builtins/fixed_oids.go``) and documented in 2020 (so it
    existed before and after); the ``notable`` matrix overrides both:
    "present only in newest master" is absent everywhere (no release is known
    to ship it), "present from v26.2" from v26.2 on.
    """
    rel = release(name)
    data = facts.load("builtins.json")
    eras = data["eras"]
    label = "v{}.{} ".format(*rel.version)
    documented = next(v for k, v in eras.items() if k.startswith(label))
    master = next(v for k, v in eras.items() if k.startswith("master"))
    old = next(v for k, v in eras.items() if k.startswith("v20.2"))
    present = set(documented["functions"])
    present |= set(master["functions"]) & set(old["functions"])
    # crdb_internal.* builtins are documented only up to v23.1: one in the
    # 2026 registry and documented in v23.1 or 2020 existed throughout
    v23_1 = next(v for k, v in eras.items() if k.startswith("v23.1 "))
    present |= {
        f
        for f in set(master["functions"])
        & (set(v23_1["functions"]) | set(old["functions"]))
        if f.startswith("crdb_internal.")
    }
    verdicts: dict[str, str] = {}
    for fname, row in {**data["notable"], **data["notable_absent"]}.items():
        status = row["status"]
        since = re.match(r"present from v(\d+)\.(\d+)", status)
        later = "newest master" in status or (
            since is not None and rel.version < (int(since[1]), int(since[2]))
        )
        if status.startswith("present") and not later:
            present.add(fname)
        else:
            present.discard(fname)
            verdicts[fname] = status
    return frozenset(present), verdicts


_V26_JSON = re.compile(r"## 4\..*?```json\n(?P<json>.*?)```", re.S)
_V26_NEW_TABLES = re.compile(
    r"New pg_catalog tables in LT-PGC18.*?\(15\): (.*?)\s\(144", re.S
)


@cache
def catalog(name: str) -> dict[tuple[str, str], frozenset[str] | None]:
    """(schema, relation) -> its columns at ``name``; None where unknown."""
    rel = release(name)
    era = facts.load("catalog_tables.json")["eras"]["recent (INFERRED >= v24.3)"]
    out = {
        (schema, table): (
            frozenset(row["columns"]) if row.get("columns") is not None else None
        )
        for schema in CATALOG_SCHEMAS
        for table, row in era[schema].items()
    }
    if rel.version >= (26, 3):
        text = (facts.FACTS_DIR / "catalog_v26.md").read_text()
        match = _V26_JSON.search(text)
        new = _V26_NEW_TABLES.search(text)
        if match is None or new is None:
            raise AssertionError("tests/crdb_facts/catalog_v26.md lost its sections")
        for table, columns in json.loads(match["json"]).items():
            out[("pg_catalog", table)] = frozenset(c for c, _ in columns)
        for table in re.findall(r"`(pg_\w+)`", new[1]):
            out.setdefault(("pg_catalog", table), None)
    return out
