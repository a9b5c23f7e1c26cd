"""Alembic's dialect compliance suite (``alembic.testing.suite``)."""

from alembic.testing.suite import *  # noqa: F403
