"""Share asyncpg's type-introspection results between a pool's connections.

asyncpg looks up every type it has no codec for (enums, domains, composites,
arrays of those, ...) with one introspection query per new connection and
caches the answer on that connection only. On CockroachDB that query is slow,
seconds for the first statement of each connection
(https://github.com/MagicStack/asyncpg/issues/1163,
https://github.com/MagicStack/asyncpg/issues/1158,
https://github.com/cockroachdb/cockroach/issues/128774), and a pool that
recycles connections pays it again and again.

:func:`connection_class` builds an ``asyncpg.Connection`` subclass bound to a
:class:`SharedTypeCache`; :class:`~._pool.CockroachPool` passes it to
``asyncpg.connect(connection_class=...)``. When a connection needs types that
the cache knows (each cached answer is the complete set of rows one
introspection query returned, dependencies included), it takes them from the
cache instead of querying. ``reload_schema_state()``, which SQLAlchemy calls
after a cached-statement error (schema change), clears the shared cache too.

Caveat: this overrides ``Connection._introspect_types(typeoids, timeout)``, a
private asyncpg method (unchanged from asyncpg 0.18 to 0.32, which the tests
run); a connection class passed by the user is subclassed, not replaced.
asyncpg is not pinned: :data:`HOOK_SUPPORTED` checks at import that the method
still exists as a coroutine function with that signature, and when it does
not, :func:`connection_class` returns the base class unchanged (types are then
introspected per connection, as stock asyncpg does) and logs a WARNING once.
``tests/pool/test_asyncpg_private_api.py`` fails loudly on an asyncpg that
changed it, naming what changed.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["HOOK_SUPPORTED", "SharedTypeCache", "connection_class", "hook_supported"]

log = logging.getLogger(__name__)


def hook_supported(base: type[Any] = asyncpg.Connection) -> bool:
    """Whether ``base`` has the private hook overridden here, as expected."""
    method = getattr(base, "_introspect_types", None)
    if method is None or not inspect.iscoroutinefunction(method):
        return False
    return list(inspect.signature(method).parameters) == [
        "self",
        "typeoids",
        "timeout",
    ]


#: asyncpg's ``Connection._introspect_types`` is there as this module expects.
HOOK_SUPPORTED = hook_supported()
_warned = False


class _CachedStatement:
    """Stands in for the introspection statement asyncpg returns.

    asyncpg re-prepares the user's statement when introspection used the
    unnamed statement; answered from the cache, nothing was prepared.
    """

    name = "sqlalchemy_crdb_async_shared_types"


_CACHED = _CachedStatement()


class SharedTypeCache:
    """Introspection rows by type OID, shared by one pool's connections."""

    def __init__(self) -> None:
        self._by_oid: dict[int, tuple[Any, ...]] = {}
        #: Introspections answered from the cache.
        self.hits = 0

    def lookup(self, typeoids: Iterable[int]) -> list[Any] | None:
        """All rows needed for ``typeoids``, or None when one is unknown."""
        rows: dict[int, Any] = {}
        for oid in typeoids:
            answer = self._by_oid.get(oid)
            if answer is None:
                return None
            for row in answer:
                rows[row["oid"]] = row
        self.hits += 1
        return list(rows.values())

    def store(self, typeoids: Iterable[int], rows: Sequence[Any]) -> None:
        answer = tuple(rows)
        for oid in typeoids:
            self._by_oid[oid] = answer

    def clear(self) -> None:
        self._by_oid.clear()


def connection_class(
    cache: SharedTypeCache, base: type[Any] = asyncpg.Connection
) -> type[Any]:
    """An ``asyncpg.Connection`` subclass of ``base`` that consults ``cache``.

    ``base`` itself when asyncpg no longer has the hook (see the module
    docstring).
    """
    global _warned
    if not hook_supported(base):
        if not _warned:
            _warned = True
            log.warning(
                "asyncpg %s has no Connection._introspect_types(self, typeoids, "
                "timeout): type introspection is not shared between connections "
                "(PoolSettings.share_type_introspection has no effect)",
                asyncpg.__version__,
            )
        return base

    class SharedTypesConnection(base):  # type: ignore[misc]
        async def _introspect_types(self, typeoids: Any, timeout: Any) -> Any:
            oids = list(typeoids)
            rows = cache.lookup(oids)
            if rows is not None:
                return rows, _CACHED
            rows, stmt = await super()._introspect_types(typeoids, timeout)
            cache.store(oids, rows)
            return rows, stmt

        async def reload_schema_state(self) -> None:
            cache.clear()
            await super().reload_schema_state()

    SharedTypesConnection.__qualname__ = f"SharedTypes[{base.__qualname__}]"
    return SharedTypesConnection
