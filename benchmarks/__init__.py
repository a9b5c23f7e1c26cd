"""Benchmarks of sqlalchemy-crdb-async, side by side with what users use today.

Run ``python -m benchmarks`` (``--help`` for the options; ``--quick`` for a
smoke run under a minute). Two folders:

- :mod:`.workloads`: one module per workload, scenarios registered on it;
- :mod:`._harness`: the CLI, the variants (raw asyncpg, SQLAlchemy,
  sqlalchemy-cockroachdb, ours), the runner, statement counting, the report.

``benchmarks/README.md`` says what each workload and variant means and holds
the latest table from the development machine.
"""
