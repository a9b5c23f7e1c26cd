"""``RetryingRoute``: the FastAPI route that owns the request's transaction.

The manual is the docstring of :mod:`sqlalchemy_crdb_async.fastapi`. Here:
:class:`RetryingRoute` wraps the handler FastAPI builds for a route (body,
dependencies, endpoint, response) in :func:`_run_request`, which reads the
body once, watches for a client disconnect (lazily, :mod:`._disconnect`),
and runs attempts until one commits or the answer is final.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from typing_extensions import override

from ..errors import TransactionRetryError
from ..retry._deadline import TaskCanceller
from ..retry.policy import RetryPolicy
from ._answers import answer_for
from ._disconnect import DisconnectWatch
from ._session import STATE_KEY, RequestTransaction

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from starlette.requests import Request

__all__ = ["CLEANUP_TIMEOUT_S", "RetryingRoute", "retry_policy"]

log = logging.getLogger("sqlalchemy_crdb_async.fastapi")

#: The longest the rollback and close after a failed or cancelled attempt may
#: take before the connection is invalidated instead.
CLEANUP_TIMEOUT_S = 10.0
#: Status of the (never delivered) answer to a client that went away, as nginx
#: logs it.
CLIENT_CLOSED_REQUEST = 499
#: The message of the cancellation a client disconnect delivers.
DISCONNECT_MESSAGE = "sqlalchemy_crdb_async: the client disconnected"
#: FastAPI's exit stack for function-scoped ``yield`` dependencies.
_FUNCTION_STACK = "fastapi_function_astack"
_POLICY_ATTR = "__crdb_retry_policy__"

_Endpoint = TypeVar("_Endpoint", bound="Callable[..., Any]")


def _check_policy(policy: object, api: str) -> None:
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise TypeError(
            f"{api}: policy must be a RetryPolicy, got {type(policy).__name__}"
        )


def retry_policy(
    policy: RetryPolicy | None = None, *, idempotent: bool = False
) -> Callable[[_Endpoint], _Endpoint]:
    """Set the retry policy of one endpoint (over its router's)::

        @router.post("/transfers")
        @retry_policy(RetryPolicy(max_attempts=20), idempotent=True)
        async def transfer(...): ...

    ``idempotent=True`` retries after an ambiguous COMMIT too (say so only
    when running the endpoint twice is harmless, e.g. behind an idempotency
    key checked in the same transaction).
    """
    _check_policy(policy, "retry_policy()")

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, _POLICY_ATTR, (policy, bool(idempotent)))
        return endpoint

    return mark


class RetryingRoute(APIRoute):
    """An ``APIRoute`` whose requests run in a retried transaction.

    ``APIRouter(route_class=RetryingRoute)``; for another policy,
    ``APIRouter(route_class=RetryingRoute.configured(policy))``.
    """

    #: The router's policy (None: the library's default RetryPolicy).
    retry_policy: ClassVar[RetryPolicy | None] = None
    #: Retry after an ambiguous COMMIT too.
    idempotent: ClassVar[bool] = False

    @classmethod
    def configured(
        cls, policy: RetryPolicy | None = None, *, idempotent: bool = False
    ) -> type[RetryingRoute]:
        """A route class with this policy, for ``APIRouter(route_class=...)``."""
        _check_policy(policy, "RetryingRoute.configured()")
        return type(
            cls.__name__,
            (cls,),
            {"retry_policy": policy, "idempotent": bool(idempotent)},
        )

    @override
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        policy, idempotent = getattr(
            self.endpoint, _POLICY_ATTR, (self.retry_policy, self.idempotent)
        )

        # A partial, not a wrapping coroutine: one frame fewer on every resume
        # of the request's awaits (Starlette unwraps partials to see that the
        # handler is async).
        return partial(
            _run_request, handler=handler, policy=policy, idempotent=idempotent
        )


async def _run_request(
    request: Request,
    handler: Callable[[Request], Coroutine[Any, Any, Response]],
    policy: RetryPolicy | None,
    idempotent: bool,
) -> Response:
    # Read once: Starlette keeps the bytes on the Request, and every attempt's
    # FastAPI handler parses them from there. (A GET's is one receive() of an
    # empty message; reading it also leaves the watcher only disconnects.)
    await request.body()
    transaction = RequestTransaction(policy, idempotent)
    request.scope[STATE_KEY] = transaction
    # RetryPolicy.deadline_s bounds the request's attempts, backoffs and
    # cleanups from here: the retry helpers' timer (retry/_deadline.py), not an
    # anyio deadline, whose cancellation, delivered again at once, would cut
    # the driver's cancel request to the server short.
    timer = transaction.timer()
    timer.arm()
    # A client disconnect ends the work the same way, for the same reason: an
    # anyio cancel scope would cut asyncpg's cancel request short and leave
    # the statement running on the server (tests/fastapi/test_disconnect.py).
    gone = TaskCanceller(DISCONNECT_MESSAGE)
    gone.bind()
    watch = DisconnectWatch(request.receive, gone)
    try:
        return await _attempts(request, handler, transaction)
    except asyncio.CancelledError:
        disconnected = gone.fired > 0
        # Both disarmed: each takes back its own cancellations.
        ours = gone.disarm() | timer.disarm()
        if not ours:
            raise
        if disconnected:
            log.info("%s %s: client disconnected", request.method, request.url.path)
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        answer = answer_for(transaction.deadline_error(), transaction.policy)
        assert answer is not None
        return answer
    finally:
        watch.stop()
        gone.disarm()
        timer.disarm()


async def _attempts(
    request: Request,
    handler: Callable[[Request], Coroutine[Any, Any, Response]],
    transaction: RequestTransaction,
) -> Response:
    outer = request.scope.get(_FUNCTION_STACK)
    while True:
        transaction.begin_attempt()
        try:
            # Dependencies, endpoint, response, then COMMIT (or rollback on
            # >= 400), inline: one frame fewer on every resume.
            if outer is None:  # a FastAPI without function-scoped dependencies
                response = await handler(request)
            else:
                try:
                    async with AsyncExitStack() as function_stack:
                        request.scope[_FUNCTION_STACK] = function_stack
                        response = await handler(request)
                finally:
                    request.scope[_FUNCTION_STACK] = outer
            if response.status_code >= 400:
                await transaction.abort(transaction.cleanup_bound_s())
            else:
                await transaction.commit()
            return response
        except BaseException as error:
            transaction.note_ending()
            await transaction.abort(transaction.cleanup_bound_s(), error)
            if not isinstance(error, Exception) or isinstance(
                error, (HTTPException, RequestValidationError)
            ):
                raise
            try:
                sleep_s = transaction.next_sleep(error)
            except TransactionRetryError as verdict:  # ambiguous, or exhausted
                loop = transaction.loop
                answer = answer_for(verdict, loop.policy if loop else None)
                assert answer is not None
                return answer
            if sleep_s is None:
                answer = answer_for(error, transaction.policy, method=request.method)
                if answer is None:
                    raise
                return answer
        # Rolled back, sessions closed, admission released: nothing is held.
        await anyio.sleep(sleep_s)
