"""The ``sqlalchemy-cockroachdb`` package, installed on demand beside ours.

Cockroach Labs' ``sqlalchemy-cockroachdb`` is the dialect this project
replaces, so the benchmarks measure it. It cannot live in our environment:
it pins ``SQLAlchemy<2.1`` and registers the same ``cockroachdb`` entry-point
names as we do. So :func:`load_legacy_dialect`:

1. installs it with ``pip install --no-deps --target <cache dir>`` when the
   cache dir (default ``.bench-cache/sqlalchemy-cockroachdb`` in the checkout)
   does not hold it yet: *without its dependencies*, so it runs on whatever
   SQLAlchemy this environment has (the report says so);
2. appends the cache dir to ``sys.path`` and imports its asyncpg dialect; its
   package ``__init__`` re-registers ``cockroachdb.*`` for itself, so ours are
   registered again straight after, and checked;
3. registers its asyncpg dialect under the private name
   ``crdb_legacy.asyncpg``: the URL scheme ``crdb_legacy+asyncpg://``.

Any failure (no network, an import error on this SQLAlchemy) gives a
:class:`LegacyDialect` with ``reason`` set: that variant is then reported as
unavailable with the reason, and the run goes on.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_CACHE_DIR", "REGISTRY_NAME", "LegacyDialect", "load_legacy_dialect"]

PACKAGE = "sqlalchemy-cockroachdb"
MODULE = "sqlalchemy_cockroachdb"
REGISTRY_NAME = "crdb_legacy.asyncpg"
DEFAULT_CACHE_DIR = (
    Path(__file__).resolve().parent.parent / ".bench-cache" / "sqlalchemy-cockroachdb"
)
PIP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class LegacyDialect:
    """What loading gave: the version and a note, or the reason it failed."""

    version: str | None = None
    note: str = ""
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None


_loaded: LegacyDialect | None = None


def load_legacy_dialect(cache_dir: Path = DEFAULT_CACHE_DIR) -> LegacyDialect:
    """Install (once) and register ``crdb_legacy+asyncpg``; never raises."""
    global _loaded
    if _loaded is None:
        _loaded = _load(cache_dir)
    return _loaded


def _load(cache_dir: Path) -> LegacyDialect:
    if not (cache_dir / MODULE / "__init__.py").is_file():
        error = _pip_install(cache_dir)
        if error:
            return LegacyDialect(reason=error)
    if str(cache_dir) not in sys.path:
        sys.path.append(str(cache_dir))
    try:
        legacy = importlib.import_module(MODULE)
        importlib.import_module(f"{MODULE}.asyncpg")
    except Exception as e:
        return LegacyDialect(reason=f"{PACKAGE} does not import here: {e!r}")
    finally:
        _reregister_ours()
    from sqlalchemy import __version__ as sa_version
    from sqlalchemy.dialects import registry

    registry.register(REGISTRY_NAME, f"{MODULE}.asyncpg", "CockroachDBDialect_asyncpg")
    version = str(getattr(legacy, "__version__", "?"))
    return LegacyDialect(
        version=version,
        note=(
            f"{PACKAGE} {version} was installed with pip --no-deps into {cache_dir} "
            f"and runs on this environment's SQLAlchemy {sa_version} (it pins "
            "SQLAlchemy<2.1); registered as crdb_legacy+asyncpg://"
        ),
    )


def _pip_install(cache_dir: Path) -> str | None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        str(cache_dir),
        PACKAGE,
    ]
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"pip install {PACKAGE} failed: {e}"
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        return f"pip install {PACKAGE} failed ({result.returncode}): {' '.join(tail)}"
    return None


def _reregister_ours() -> None:
    """Put our ``cockroachdb.*`` names back after the other package took them."""
    from sqlalchemy.dialects import registry

    import sqlalchemy_crdb_async

    for name, module, cls in sqlalchemy_crdb_async.DIALECTS:
        registry.register(name, module, cls)
    loaded = registry.load("cockroachdb.asyncpg")
    if not loaded.__module__.startswith("sqlalchemy_crdb_async"):
        raise RuntimeError(f"cockroachdb.asyncpg resolves to {loaded!r}, not ours")
