"""examples/vector_search.py and the bank app's GET /search, on a server with
the VECTOR type (and the 501 answer on one without)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from examples.fastapi_bank.app import create_app
from examples.vector_search import embed, run, titles

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from sqlalchemy_crdb_async.testing import TestServer


def test_embeddings_are_deterministic_unit_vectors() -> None:
    first, again = embed("restore backup"), embed("restore backup")
    assert first == again
    assert len(first) == 64
    assert abs(sum(x * x for x in first) - 1.0) < 1e-9
    assert embed("restore backup") != embed("tuning indexes")
    assert titles(3) == titles(3)


async def test_example_finds_an_exact_title(pgvector_url: URL) -> None:
    wanted = titles(600)[123]
    answers = await run(
        pgvector_url.render_as_string(hide_password=False), [wanted], rows=600
    )
    best_title, best_distance = answers[wanted][0]
    assert best_title == wanted
    assert best_distance < 1e-5
    distances = [d for _, d in answers[wanted]]
    assert distances == sorted(distances)


async def _get_search(url: URL, params: dict[str, str]) -> httpx.Response:
    app = create_app(url.render_as_string(hide_password=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as c:
            return await c.get("/search", params=params)


async def test_search_endpoint(pgvector_url: URL) -> None:
    wanted = titles(1_000)[42]
    response = await _get_search(pgvector_url, {"q": wanted, "k": "3"})
    assert response.status_code == 200, response.text
    hits = response.json()
    assert len(hits) == 3
    assert hits[0]["title"] == wanted


async def test_search_endpoint_without_vectors(
    crdb_server: TestServer, crdb_url: URL
) -> None:
    response = await _get_search(crdb_url, {"q": "backup"})
    if crdb_server.has_vector_type():
        assert response.status_code in (200, 501)
    else:
        assert response.status_code == 501
        assert "pgvector" in response.json()["detail"]
