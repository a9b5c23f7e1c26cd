"""What :func:`.retrying_session` returns: an ``async with``-only wrapper (internal).

:class:`SessionContext` forwards ``async with`` to the session's context
manager and turns ``async for`` over it, a common slip, into a ``TypeError``
that names the right form.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["SessionContext"]


class SessionContext(AbstractAsyncContextManager["AsyncSession"]):
    """What :func:`retrying_session` returns: ``async with`` only."""

    def __init__(self, inner: AbstractAsyncContextManager[AsyncSession]) -> None:
        self._inner = inner

    async def __aenter__(self) -> AsyncSession:
        return await self._inner.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._inner.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> NoReturn:
        # `async for` over it is a common slip (retrying() is the loop form).
        raise TypeError(
            "retrying_session() is an async context manager, not an iterator: "
            "write `async with retrying_session(Session) as session:`; for a "
            "loop of attempts use `async for attempt in retrying(Session):`."
        )
