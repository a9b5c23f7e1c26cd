"""libpq-style URL parameters, translated for asyncpg.

CockroachDB Cloud hands out libpq connection strings such as::

    postgresql://alice:secret@free-tier.gcp-us-central1.cockroachlabs.cloud:26257/
        defaultdb?sslmode=verify-full&sslrootcert=/home/alice/.postgresql/root.crt
        &options=--cluster%3Dmy-cluster-123

psycopg reads those parameters itself, but ``asyncpg.connect()`` takes an
``ssl`` context and ``server_settings`` instead. :func:`asyncpg_connect_kwargs`
turns the query part of a SQLAlchemy URL into the keyword arguments asyncpg
wants, so such a URL works verbatim with ``cockroachdb+asyncpg://``:

==================  ==========================================================
URL parameter       what asyncpg receives
==================  ==========================================================
sslmode             ``ssl``: ``False`` for disable; the mode name for allow,
                    prefer and require without certificate files (asyncpg
                    then applies libpq's rules and fallbacks); otherwise an
                    ``ssl.SSLContext`` built with libpq's rules
sslrootcert         CA file for verification (``system``: the OS trust store,
                    as libpq 16 spells it). With ``sslmode=require`` a root
                    certificate makes it behave like verify-ca, as in libpq
sslcert, sslkey     the client certificate chain (CockroachDB's
                    ``client.<user>.crt`` / ``.key``)
sslpassword         the client key's passphrase (never shown in errors)
options             the ``options`` startup parameter (``--cluster=name``,
                    ``-c statement_timeout=5s``)
application_name    the ``application_name`` startup parameter
connect_timeout     ``timeout`` in seconds (0 means wait forever, as in libpq)
==================  ==========================================================

asyncpg's own keyword arguments (``prepared_statement_cache_size``,
``command_timeout``, ...) pass through with their types coerced. Anything else
raises :class:`~sqlalchemy_crdb_async.errors.ConnectParameterError` naming the
parameter: a misspelt ``sslmode`` must not silently mean "no TLS".

See also: https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS
"""

from __future__ import annotations

import contextlib
import math
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from ..errors import ConnectParameterError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SSL_MODES", "asyncpg_connect_kwargs"]

#: libpq's sslmode values, weakest first.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

_SECRET_PARAMS = frozenset({"sslpassword", "password"})
_STARTUP_PARAMS = ("options", "application_name")
_SSL_FILE_PARAMS = ("sslrootcert", "sslcert", "sslkey")
_LIBPQ_PARAMS = frozenset(
    {"sslmode", "sslpassword", "connect_timeout", *_STARTUP_PARAMS, *_SSL_FILE_PARAMS}
)
# asyncpg.connect() keywords accepted in a URL, with the type each is coerced to.
_ASYNCPG_PARAMS: dict[str, type] = {
    "prepared_statement_cache_size": int,
    "statement_cache_size": int,
    "max_cached_statement_lifetime": int,
    "max_cacheable_statement_size": int,
    "command_timeout": float,
    "timeout": float,
    "target_session_attrs": str,
    "krbsrvname": str,
    "gsslib": str,
    "passfile": str,
    "direct_tls": bool,
}


def asyncpg_connect_kwargs(
    query: Mapping[str, str | tuple[str, ...]],
) -> dict[str, Any]:
    """Translate a URL's query parameters into ``asyncpg.connect()`` keywords.

    ``query`` is ``sqlalchemy.engine.URL.query``. Raises
    :class:`~sqlalchemy_crdb_async.errors.ConnectParameterError` for an unknown
    parameter, a repeated one, a bad value, or a certificate file that does not
    exist.
    """
    params = {name: _single(name, value) for name, value in query.items()}
    unknown = sorted(set(params) - _LIBPQ_PARAMS - set(_ASYNCPG_PARAMS))
    if unknown:
        supported = ", ".join(sorted(_LIBPQ_PARAMS | set(_ASYNCPG_PARAMS)))
        raise ConnectParameterError(
            f"Unknown URL parameter {unknown[0]!r} for cockroachdb+asyncpg. "
            f"Supported parameters: {supported}. Pass other asyncpg.connect() "
            "options through create_async_engine(..., connect_args={...})."
        )

    kwargs: dict[str, Any] = {}
    for name, kind in _ASYNCPG_PARAMS.items():
        if name in params:
            kwargs[name] = _coerce(name, params[name], kind)

    server_settings = {n: params[n] for n in _STARTUP_PARAMS if n in params}
    if server_settings:
        kwargs["server_settings"] = server_settings

    if "connect_timeout" in params:
        timeout = _coerce("connect_timeout", params["connect_timeout"], int)
        if timeout < 0:
            raise ConnectParameterError(
                f"URL parameter 'connect_timeout' must be a whole number of seconds "
                f">= 0, got {params['connect_timeout']!r}."
            )
        # libpq: 0 (or absent) waits forever; asyncpg's default is 60 s.
        kwargs["timeout"] = float(timeout) if timeout > 0 else None

    ssl_value = _ssl_argument(params)
    if ssl_value is not None:
        kwargs["ssl"] = ssl_value
    return kwargs


def _ssl_argument(params: Mapping[str, str]) -> bool | str | ssl.SSLContext | None:
    mode = params.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        raise ConnectParameterError(
            f"URL parameter 'sslmode' has the unknown value {mode!r}; "
            f"use one of: {', '.join(SSL_MODES)}."
        )
    files = {n: params[n] for n in _SSL_FILE_PARAMS if n in params}
    for name, path in files.items():
        if name == "sslrootcert" and path == "system":
            continue
        _check_readable(name, path)
    if "sslkey" in files and "sslcert" not in files:
        raise ConnectParameterError(
            "URL parameter 'sslkey' was given without 'sslcert'; give both the "
            "client certificate and its key."
        )

    if not files and "sslpassword" not in params:
        # asyncpg implements libpq's sslmode rules (prefer/allow fallbacks,
        # ~/.postgresql/root.crt, PGSSL* variables) when given the mode name.
        if mode is None:
            return None
        if mode in ("verify-ca", "verify-full"):
            _require_root_cert(mode)
        return False if mode == "disable" else mode

    effective = mode or "prefer"
    if effective == "disable":
        raise ConnectParameterError(
            "sslmode=disable was given together with certificate parameters "
            f"({', '.join(sorted(files)) or 'sslpassword'}); remove them or choose "
            "sslmode=require, verify-ca or verify-full."
        )
    if effective in ("allow", "prefer"):
        raise ConnectParameterError(
            f"sslmode={effective} with certificate parameters "
            f"({', '.join(sorted(files)) or 'sslpassword'}) is not supported by "
            "asyncpg: it cannot fall back to plain text with a custom TLS context. "
            "Use sslmode=require, verify-ca or verify-full."
        )
    if effective == "require" and "sslrootcert" in files:
        # libpq: "if a root CA file exists, the behavior of sslmode=require
        # will be the same as that of verify-ca".
        effective = "verify-ca"
    return _ssl_context(effective, files, params.get("sslpassword"))


def _require_root_cert(mode: str) -> None:
    """Name ``sslrootcert`` when verification has no CA certificate to use.

    Without it libpq (and asyncpg) fall back to ``$PGSSLROOTCERT``, then
    ``~/.postgresql/root.crt``; asyncpg's error then names that file but not the
    URL parameter that would fix it.
    """
    if os.environ.get("PGSSLROOTCERT"):
        return
    default = Path("~/.postgresql/root.crt").expanduser()
    if default.is_file():
        return
    raise ConnectParameterError(
        f"sslmode={mode} verifies the server's certificate, but no CA "
        f"certificate was given and the default {str(default)!r} does not "
        "exist: add the URL parameter sslrootcert=/path/to/ca.crt (on "
        "CockroachDB Cloud, the cluster's CA certificate), or "
        "sslrootcert=system to trust the operating system's CA store."
    )


def _ssl_context(
    mode: str, files: Mapping[str, str], password: str | None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslobject_class = OneWayCloseSSLObject
    if mode == "require":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = mode == "verify-full"
        ctx.verify_mode = ssl.CERT_REQUIRED
        rootcert = files.get("sslrootcert")
        try:
            if rootcert is None or rootcert == "system":
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
            else:
                ctx.load_verify_locations(cafile=rootcert)
        except ssl.SSLError as e:
            raise ConnectParameterError(
                f"URL parameter 'sslrootcert' ({rootcert!r}) is not a PEM CA "
                f"certificate file: {e.reason or e}."
            ) from None
    if "sslcert" in files:
        try:
            ctx.load_cert_chain(
                files["sslcert"],
                keyfile=files.get("sslkey"),
                password=(lambda: password or "") if password is not None else None,
            )
        except ssl.SSLError as e:
            raise ConnectParameterError(
                "URL parameters 'sslcert'/'sslkey' could not be loaded "
                f"({e.reason or 'bad certificate, key or sslpassword'}); check "
                "that the files are PEM, that the key matches the certificate and "
                "that 'sslpassword' is right."
            ) from None
    return ctx


class OneWayCloseSSLObject(ssl.SSLObject):
    """A TLS connection that closes without waiting for the server's close_notify.

    asyncio (and uvloop) close a TLS transport gracefully: send close_notify,
    then keep the socket open until the peer's close_notify or EOF arrives
    (up to 30 s). When the server refuses a connection after the handshake (no
    client certificate, a failed password), asyncpg closes the transport and
    raises at once, while the server's own close is still on its way; a caller
    whose event loop ends first leaked the socket (``ResourceWarning:
    unclosed transport``), and how soon the server's FIN arrived decided
    whether it did. TLS lets the side that closes stop there: "It is not
    required for the initiator of the close to wait for the responding
    close_notify alert before closing the read side of the connection"
    (RFC 8446, section 6.1, https://www.rfc-editor.org/rfc/rfc8446#section-6.1).
    With this class the shutdown is complete once our close_notify is written,
    so the socket closes within two turns of the event loop, whatever the
    server does. Set per context (``SSLContext.sslobject_class``), never
    process-wide.
    """

    @override
    def unwrap(self) -> None:
        # SSLWantReadError: our close_notify is in the outgoing buffer; the
        # loop sends it and closes the socket. The server's answer is not needed.
        with contextlib.suppress(ssl.SSLWantReadError):
            super().unwrap()


def _check_readable(name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise ConnectParameterError(
            f"URL parameter {name!r} names {path!r}, which does not exist or is not "
            "a file. Give the full path of the PEM file (CockroachDB Cloud: the CA "
            "certificate downloaded from the cluster's Connect dialog)."
        )
    if not os.access(path, os.R_OK):
        raise ConnectParameterError(
            f"URL parameter {name!r} names {path!r}, which this process cannot read."
        )


def _single(name: str, value: str | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        if name in _SECRET_PARAMS:
            raise ConnectParameterError(f"URL parameter {name!r} is given twice.")
        raise ConnectParameterError(
            f"URL parameter {name!r} is given {len(value)} times "
            f"({', '.join(map(repr, value))}); give it once."
        )
    return value


def _coerce(name: str, value: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        result = kind(value)
        # a timeout is a finite number > 0 (asyncpg takes nan, which never
        # expires); a size or count is >= 0
        if kind is float and not (math.isfinite(result) and result > 0):
            raise ValueError(value)
        if kind is int and result < 0:
            raise ValueError(value)
        return result
    except ValueError:
        raise ConnectParameterError(
            f"URL parameter {name!r} must be {_KIND_NAMES[kind]}, got {value!r}."
        ) from None


_KIND_NAMES = {
    int: "a whole number >= 0",
    float: "a number of seconds > 0",
    bool: "true or false",
    str: "text",
}
