from __future__ import annotations

import httpx


async def test_health_says_the_server_runs_and_reaches_its_database(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_head_on_health_answers_like_get_without_a_body(api: httpx.AsyncClient) -> None:
    got = await api.get("/api/v1/health")
    response = await api.head("/api/v1/health")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == got.headers["content-type"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_unknown_path_is_a_problem_with_a_code_in_the_callers_language(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/api/v1/nothing-here", headers={"Accept-Language": "zh-CN"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["title"] == "未找到"
    assert body["type"] == "/api/v1/problems/not_found"


async def test_a_body_larger_than_the_limit_is_refused_before_any_route(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/api/v1/health", content=b"x" * 70_000)
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


async def test_the_documentation_page_and_its_files_are_served_without_a_cdn(
    api: httpx.AsyncClient,
) -> None:
    page = await api.get("/api/docs")
    assert page.status_code == 200
    assert "/api/docs/static/swagger-ui-bundle.js" in page.text
    assert "/api/v1/openapi.json" in page.text
    script = await api.get("/api/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 100_000
    document = (await api.get("/api/v1/openapi.json")).json()
    assert "card_unknown" in document["x-error-codes"]
    assert (
        "card_unknown" in document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
    )
