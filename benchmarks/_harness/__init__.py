"""The benchmark harness: options, variants, measurement, report (internal).

- :mod:`.cli`: options, the server (embedded PostgreSQL by default), the run;
- :mod:`.variants`: raw asyncpg, SQLAlchemy, sqlalchemy-cockroachdb, ours;
- :mod:`.legacy`: installs and loads sqlalchemy-cockroachdb without its deps;
- :mod:`.runner`: measures one cell; interleaves the cells;
- :mod:`.statements`: statements per operation, from the server's log;
- :mod:`.report`: markdown table, JSON, PNG plots.

The workloads live beside it in :mod:`benchmarks.workloads`.
"""
