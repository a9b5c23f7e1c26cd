"""libpq URL parameters are translated for asyncpg, and bad ones get clear errors."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from sqlalchemy_crdb_async import ConnectParameterError
from sqlalchemy_crdb_async.dialect._libpq import SSL_MODES, asyncpg_connect_kwargs
from tests.certs import Certs, make_certs

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def connect_args(url: str) -> dict:
    engine = create_engine(url)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    return kwargs


def test_cloud_url_pasted_verbatim(certs: Certs) -> None:
    url = (
        "cockroachdb+asyncpg://alice:pw@free-tier.cockroachlabs.cloud:26257/defaultdb"
        f"?sslmode=verify-full&sslrootcert={certs.ca_cert}"
        "&options=--cluster%3Dmy-cluster-123&application_name=orders"
    )
    kwargs = connect_args(url)
    assert kwargs["host"] == "free-tier.cockroachlabs.cloud"
    assert kwargs["port"] == 26257
    assert kwargs["user"] == "alice"
    assert kwargs["password"] == "pw"
    assert kwargs["database"] == "defaultdb"
    assert kwargs["server_settings"] == {
        "options": "--cluster=my-cluster-123",
        "application_name": "orders",
    }
    ctx = kwargs["ssl"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert "sslmode" not in kwargs
    assert "sslrootcert" not in kwargs


@pytest.mark.parametrize("mode", SSL_MODES)
def test_sslmode_without_files_is_passed_to_asyncpg(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # verify-ca/-full need a CA: asyncpg reads it from $PGSSLROOTCERT here
    monkeypatch.setenv("PGSSLROOTCERT", "/ca.crt")
    kwargs = asyncpg_connect_kwargs({"sslmode": mode})
    assert kwargs["ssl"] == (False if mode == "disable" else mode)


def test_no_sslmode_leaves_asyncpg_default() -> None:
    assert "ssl" not in asyncpg_connect_kwargs({})


def test_require_with_root_cert_behaves_like_verify_ca(certs: Certs) -> None:
    ctx = asyncpg_connect_kwargs(
        {"sslmode": "require", "sslrootcert": str(certs.ca_cert)}
    )["ssl"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is False


def test_verify_ca_does_not_check_hostname(certs: Certs) -> None:
    ctx = asyncpg_connect_kwargs(
        {"sslmode": "verify-ca", "sslrootcert": str(certs.ca_cert)}
    )["ssl"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is False


def test_sslrootcert_system_uses_the_os_trust_store() -> None:
    ctx = asyncpg_connect_kwargs({"sslmode": "verify-full", "sslrootcert": "system"})[
        "ssl"
    ]
    assert ctx.check_hostname is True
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_with_encrypted_key(certs: Certs) -> None:
    kwargs = asyncpg_connect_kwargs(
        {
            "sslmode": "verify-full",
            "sslrootcert": str(certs.ca_cert),
            "sslcert": str(certs.client_cert),
            "sslkey": str(certs.encrypted_client_key),
            "sslpassword": certs.key_password,
        }
    )
    assert isinstance(kwargs["ssl"], ssl.SSLContext)


def test_wrong_sslpassword_is_a_clear_error_without_the_password(certs: Certs) -> None:
    with pytest.raises(ConnectParameterError, match="sslpassword") as info:
        asyncpg_connect_kwargs(
            {
                "sslmode": "require",
                "sslcert": str(certs.client_cert),
                "sslkey": str(certs.encrypted_client_key),
                "sslpassword": "wrong-password-123",
            }
        )
    assert "wrong-password-123" not in str(info.value)


def test_unknown_sslmode_names_the_parameter_and_the_choices() -> None:
    with pytest.raises(ConnectParameterError) as info:
        connect_args("cockroachdb+asyncpg://u:topsecret@h/db?sslmode=verify_full")
    message = str(info.value)
    assert "'sslmode'" in message
    assert "'verify_full'" in message
    assert "verify-full" in message
    assert "topsecret" not in message


@pytest.mark.parametrize("param", ["sslrootcert", "sslcert", "sslkey"])
def test_missing_certificate_file_names_the_parameter(
    param: str, tmp_path: Path, certs: Certs
) -> None:
    missing = tmp_path / "nope.pem"
    query = {"sslmode": "verify-full", param: str(missing)}
    if param == "sslkey":
        query["sslcert"] = str(certs.client_cert)
    with pytest.raises(ConnectParameterError) as info:
        asyncpg_connect_kwargs(query)
    assert repr(param) in str(info.value)
    assert str(missing) in str(info.value)


def test_root_cert_that_is_not_pem(tmp_path: Path) -> None:
    bogus = tmp_path / "root.crt"
    bogus.write_text("not a certificate")
    with pytest.raises(ConnectParameterError, match="sslrootcert"):
        asyncpg_connect_kwargs({"sslmode": "verify-full", "sslrootcert": str(bogus)})


def test_sslkey_without_sslcert(certs: Certs) -> None:
    with pytest.raises(ConnectParameterError, match="without 'sslcert'"):
        asyncpg_connect_kwargs({"sslmode": "require", "sslkey": str(certs.client_key)})


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_certificates_with_weak_sslmode_are_rejected(mode: str, certs: Certs) -> None:
    with pytest.raises(ConnectParameterError, match=f"sslmode={mode}"):
        asyncpg_connect_kwargs({"sslmode": mode, "sslrootcert": str(certs.ca_cert)})


def test_password_never_appears_in_errors() -> None:
    with pytest.raises(ConnectParameterError) as info:
        connect_args(
            "cockroachdb+asyncpg://u:hunter2pass@h/db?sslpassword=a&sslpassword=b"
        )
    assert "hunter2pass" not in str(info.value)
    assert "'a'" not in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [("10", 10.0), ("0", None), ("1", 1.0)])
def test_connect_timeout(value: str, expected: float | None) -> None:
    assert asyncpg_connect_kwargs({"connect_timeout": value})["timeout"] == expected


@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
def test_bad_connect_timeout(value: str) -> None:
    with pytest.raises(ConnectParameterError, match="connect_timeout"):
        asyncpg_connect_kwargs({"connect_timeout": value})


def test_unknown_parameter_is_an_error_listing_supported_ones() -> None:
    with pytest.raises(ConnectParameterError) as info:
        connect_args("cockroachdb+asyncpg://u@h/db?sslmdoe=require")
    assert "'sslmdoe'" in str(info.value)
    assert "sslmode" in str(info.value)
    assert "connect_args" in str(info.value)


def test_repeated_parameter_is_an_error() -> None:
    with pytest.raises(ConnectParameterError, match="given 2 times"):
        connect_args("cockroachdb+asyncpg://u@h/db?sslmode=require&sslmode=disable")


def test_asyncpg_keywords_pass_through_with_types() -> None:
    kwargs = asyncpg_connect_kwargs(
        {
            "prepared_statement_cache_size": "0",
            "command_timeout": "2.5",
            "direct_tls": "false",
        }
    )
    assert kwargs == {
        "prepared_statement_cache_size": 0,
        "command_timeout": 2.5,
        "direct_tls": False,
    }


def test_bad_asyncpg_keyword_value() -> None:
    with pytest.raises(ConnectParameterError, match="'command_timeout' must be"):
        asyncpg_connect_kwargs({"command_timeout": "soon"})


def test_multihost_url_keeps_sqlalchemy_hosts() -> None:
    kwargs = connect_args(
        "cockroachdb+asyncpg://root@/defaultdb?host=n1:26257&host=n2:26258"
        "&sslmode=disable"
    )
    assert kwargs["host"] == ["n1", "n2"]
    assert kwargs["port"] == [26257, 26258]
    assert kwargs["ssl"] is False


def test_url_object_query_is_untouched() -> None:
    url = make_url("cockroachdb+asyncpg://u@h/db?sslmode=disable")
    connect_args(str(url))
    assert url.query == {"sslmode": "disable"}
