"""Benchmarks of sqlalchemy-crdb-async, side by side with what users use today.

Run ``python -m benchmarks`` (``--help`` for the options; ``--quick`` for a
smoke run under a minute). Modules, one job each:

- :mod:`.cli`: options, the server (embedded PostgreSQL by default), the run;
- :mod:`.workloads`: one module per workload, scenarios registered on it;
- :mod:`.variants`: raw asyncpg, SQLAlchemy, sqlalchemy-cockroachdb, ours;
- :mod:`.legacy`: installs and loads sqlalchemy-cockroachdb without its deps;
- :mod:`.runner`: measures one cell; interleaves the cells;
- :mod:`.statements`: statements per operation, from the server's log;
- :mod:`.report`: markdown table, JSON, PNG plots.

``benchmarks/README.md`` says what each workload and variant means and holds
the latest table from the development machine.
"""
