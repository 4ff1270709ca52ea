"""Security headers (issue 9, A11) on every route of the app's route table, the documentation and
its files, errors, 404s and 413s; no-store on everything but the documentation's static files."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Sequence

import httpx
from starlette.routing import BaseRoute, Mount, Route

from topup.bootstrap import Application
from topup.entrypoints.api.app import DOCS_STATIC, create_app
from topup.entrypoints.http.request_checks import BODY_BYTES_MAX
from topup.entrypoints.http.security_headers import JSON_POLICY

STRICT = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def assert_hardened(answer: httpx.Response, *, cache: str = "no-store") -> None:
    where = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
    for name, value in STRICT.items():
        assert answer.headers.get(name) == value, where
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], where
    assert cache in answer.headers["cache-control"], where


def route_table(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI keeps them behind the router)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from route_table(included.routes)
        else:
            yield route


async def test_every_route_of_the_route_table_answers_with_the_security_headers(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    app = create_app(demo_app)
    checked: set[str] = set()
    for route in route_table(app.routes):
        if isinstance(route, Route):
            path = PATH_PARAMETER.sub("x", route.path)
            for method in sorted(route.methods):
                answer = await api.request(method, path)
                assert_hardened(answer)
                if not path.startswith("/api/docs"):
                    assert answer.headers["content-security-policy"] == JSON_POLICY
            checked.add(route.path)
        elif isinstance(route, Mount):
            answer = await api.get(f"{route.path}/swagger-ui.css")
            assert answer.status_code == 200
            assert_hardened(answer, cache="public")
            checked.add(route.path)
    assert set(app.openapi()["paths"]) <= checked
    assert {"/api/docs", DOCS_STATIC, "/api/v1/openapi.json"} <= checked


async def test_errors_not_found_and_oversized_bodies_carry_the_security_headers(
    api: httpx.AsyncClient,
) -> None:
    answers = [
        await api.get("/nowhere"),
        await api.get(f"{DOCS_STATIC}/nothing.js"),
        await api.delete("/api/v1/health"),
        await api.post(
            "/api/v1/accounts", content=b"{", headers={"Content-Type": "application/json"}
        ),
        await api.post("/api/v1/accounts", content=b" " * (BODY_BYTES_MAX + 1)),
        await api.get("/api/v1/renewals/%00"),
    ]
    assert [answer.status_code for answer in answers] == [404, 404, 405, 400, 413, 404]
    for answer in answers:
        assert_hardened(answer)
        assert answer.headers["content-security-policy"] == JSON_POLICY


async def test_answers_with_secrets_are_not_stored_by_caches(api: httpx.AsyncClient) -> None:
    token = await api.post(
        "/sandbox/psp/v1/tokens",
        json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
    )
    assert token.status_code == 201
    assert token.headers["cache-control"] == "no-store"


async def test_the_documentation_page_allows_only_its_own_scripts_and_styles(
    api: httpx.AsyncClient,
) -> None:
    page = await api.get("/api/docs")
    assert page.status_code == 200
    assert_hardened(page)
    policy = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"  # the OpenAPI document, "Try it out"
    assert directives["style-src"].startswith("'self'")
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert inline, "the page starts Swagger UI with an inline script"
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["script-src"]
    assert "'unsafe-inline'" not in directives["script-src"]
    for source in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert source.startswith(DOCS_STATIC), source  # same origin: no CDN
        assert (await api.get(source)).status_code == 200
