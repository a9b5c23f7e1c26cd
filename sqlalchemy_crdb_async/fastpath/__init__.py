"""The prepared fast path: SQLAlchemy Core statements at driver speed.

SQLAlchemy's per-execution work (statement cache lookup, parameter processing,
the result proxy, ``AsyncConnection``'s greenlet hops, and the ``BEGIN`` /
``ROLLBACK`` around a read) costs about twice what asyncpg spends on a point
read. :func:`prepared` keeps SQLAlchemy's expressions, types and ``Row`` and
drops that work::

    from sqlalchemy import bindparam, select
    from sqlalchemy_crdb_async import prepared

    ACCOUNT = prepared(select(accounts).where(accounts.c.id == bindparam("id")))

    row = await ACCOUNT.one_or_none(engine, id=account_id)   # one round trip
    async with engine.begin() as conn:                        # in a transaction
        row = await ACCOUNT.one(conn, id=account_id)

Methods (``target`` first, then the parameters by name): ``all``, ``first``,
``one``, ``one_or_none``, ``scalar``, ``scalars`` (a list), and ``execute`` for
writes (returns the row count; ``RETURNING`` rows come from the read methods).
``one`` raises SQLAlchemy's ``NoResultFound`` / ``MultipleResultsFound``.

What it does
    The statement is compiled once per dialect (bind names to ``$n``
    positions, bind processors looked up once; :mod:`._compile`). On each
    connection it is prepared once as an asyncpg named statement (kept with
    the connection, :mod:`._driver`); the result processors are chosen once,
    from the column types the server reports, and only the columns that need
    one are touched (asyncpg decodes most types itself). Rows are SQLAlchemy
    ``Row`` objects: ``row.id``, ``row[0]``, ``row._mapping[accounts.c.id]``,
    with every type the dialect maps applied as the ordinary path applies it
    (``Numeric`` as ``Decimal``, JSON decoded, UUID, dates, arrays, enums).

Targets (:mod:`._targets`)
    An ``AsyncEngine``: check out, one extended-protocol round trip (Bind,
    Execute, Sync), give back, with no ``BEGIN``, ``ROLLBACK`` or session
    reset, when the statement leaves no session state behind: the pool's
    judge (``pool/_statements.py``, the same as on the ordinary path) finds
    that of a select or a write of pure builtins with no text fragment, into
    a table none of whose defaults can draw a sequence value (a UUID key made
    by ``gen_random_uuid()``, ``now()``: yes; SERIAL, ``Sequence``,
    ``Identity()``: no). Anything else (``set_config``, advisory locks,
    your own functions, an insert that draws ``nextval``) still gets the
    reset. A write through an engine is its own implicit transaction and
    has committed when the call returns. An ``AsyncConnection`` or
    ``AsyncSession``: inside its transaction (begun if none is), so retry
    bodies (``run_transaction``, ``retrying_session``, ``RetryingRoute``)
    use it like ``execute()``.

Errors
    The server's errors arrive as on the ordinary path (``DBAPIError``
    subclasses with ``orig.sqlstate``), so the retry helpers classify them
    the same. A stale prepared statement after ``ALTER TABLE`` (0A000) is
    handled as the ordinary path does: caches cleared, and outside a
    transaction the statement is prepared again and run once more; inside
    one the retry helpers run the transaction again. Missing or unknown
    parameters raise :class:`~sqlalchemy_crdb_async.errors.PreparedParameterError`
    naming them; a statement or driver the fast path cannot run raises
    :class:`~sqlalchemy_crdb_async.errors.FastPathError` (psycopg engines:
    use ``execute()``, or asyncpg).

Limits
    Core select, insert, update and delete only (an ORM entity select returns
    objects on the ordinary path, so it is refused here: select its table or
    columns); no expanding ``IN`` lists (write ``col == any_(bindparam("ids",
    type_=ARRAY(...)))``); every named parameter without a value is
    required (an ``insert(t)`` column left out is not silently NULL);
    Python-side column defaults that read the execution context are not
    computed (pass the value). No ORM events, no ``before_cursor_execute``
    events, no echo: the fast path skips the ``Connection`` they hang on.
"""

from __future__ import annotations

from ._prepared import PreparedQuery, prepared

__all__ = ["PreparedQuery", "prepared"]
