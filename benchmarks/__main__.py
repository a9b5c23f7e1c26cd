"""``python -m benchmarks``; see :mod:`benchmarks._harness.cli`."""

from ._harness.cli import main

raise SystemExit(main())
