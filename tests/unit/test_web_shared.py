"""The pages' shared layer on in-memory services: CSRF refuses a form from elsewhere or without
its token before any route runs, the language switch goes back only to this site, a partial is
one block of the page, and a bug is a page naming a reference, never a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import PlainTextResponse, Response

from tests.unit.fakes import TEST_KEY
from topup.bootstrap import build_in_memory
from topup.entrypoints.web.app import create_web_app
from topup.entrypoints.web.shared.csrf import CSRF_COOKIE, check_csrf, csrf_token
from topup.entrypoints.web.shared.language import local_path
from topup.entrypoints.web.shared.rendering import PAGE_POLICY
from topup.services.context import Services
from topup.settings import Settings


@dataclass
class _Application:
    services: Services


def _services() -> Services:
    services, _ = build_in_memory(Settings(secret_key=TEST_KEY, gateway_latency_s=0), seed=1)
    return services


def _form_app(services: Services) -> FastAPI:
    """A web app with one form route behind the CSRF check, as a channel's router is."""
    app = create_web_app(_Application(services), secure_cookies=False, trusted_proxies=())
    router = APIRouter(dependencies=[Depends(check_csrf)])

    @router.get("/test-form")
    async def show(request: Request) -> Response:
        return PlainTextResponse(csrf_token(request))

    @router.post("/test-form")
    async def send(request: Request) -> Response:
        return PlainTextResponse("sent")

    @router.get("/test-bug")
    async def bug(request: Request) -> Response:
        raise RuntimeError("secret detail of a bug")

    app.include_router(router)
    return app


@pytest.fixture
async def web() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_form_app(_services()))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_a_form_with_its_token_from_this_site_is_sent(web: httpx.AsyncClient) -> None:
    token = (await web.get("/test-form")).text
    answer = await web.post(
        "/test-form", data={"csrf_token": token}, headers={"sec-fetch-site": "same-origin"}
    )
    assert (answer.status_code, answer.text) == (200, "sent")


async def test_a_form_without_its_token_is_refused_before_the_route(
    web: httpx.AsyncClient,
) -> None:
    await web.get("/test-form")
    answer = await web.post("/test-form", data={"name": "x"})
    assert answer.status_code == 403
    assert "csrf_failed" in answer.text
    assert "sent" not in answer.text


async def test_a_token_of_another_visitor_is_refused(web: httpx.AsyncClient) -> None:
    token = (await web.get("/test-form")).text
    web.cookies.set(CSRF_COOKIE, "another-visitors-secret")
    answer = await web.post("/test-form", data={"csrf_token": token})
    assert answer.status_code == 403


async def test_a_form_sent_from_another_site_is_refused_even_with_the_token(
    web: httpx.AsyncClient,
) -> None:
    token = (await web.get("/test-form")).text
    cross_site = await web.post(
        "/test-form", data={"csrf_token": token}, headers={"sec-fetch-site": "cross-site"}
    )
    other_origin = await web.post(
        "/test-form", data={"csrf_token": token}, headers={"origin": "https://evil.example"}
    )
    assert (cross_site.status_code, other_origin.status_code) == (403, 403)


async def test_a_script_may_send_the_token_in_a_header(web: httpx.AsyncClient) -> None:
    token = (await web.get("/test-form")).text
    answer = await web.post("/test-form", json={}, headers={"x-csrf-token": token})
    assert answer.text == "sent"


async def test_the_first_answer_gives_the_visitor_an_http_only_secret(
    web: httpx.AsyncClient,
) -> None:
    answer = await web.get("/test-form")
    cookie = answer.headers["set-cookie"]
    assert (
        cookie.startswith(f"{CSRF_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    )
    again = await web.get("/test-form")
    assert "set-cookie" not in again.headers  # kept, not renewed on every page


@pytest.mark.parametrize(
    "candidate",
    ["//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)", "", "x"],
)
def test_going_back_after_a_switch_never_leaves_the_site(candidate: str) -> None:
    assert local_path(candidate) == "/"


def test_going_back_keeps_a_path_and_query_of_this_site() -> None:
    assert local_path("/renew?plan=pack_5gb_7d") == "/renew?plan=pack_5gb_7d"


async def test_the_language_switch_remembers_the_choice_and_goes_back(
    web: httpx.AsyncClient,
) -> None:
    answer = await web.get("/language/zh-Hans", params={"next": "//evil.example"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    assert "topup_language=zh_Hans" in answer.headers["set-cookie"]
    page = await web.get("/", headers={"accept-language": "en"})
    assert '<html lang="zh-Hans">' in page.text
    assert page.headers["content-language"] == "zh-Hans"


async def test_a_page_forbids_inline_scripts_and_framing(web: httpx.AsyncClient) -> None:
    page = await web.get("/")
    assert page.headers["content-security-policy"] == PAGE_POLICY
    assert "script-src 'self';" in PAGE_POLICY and "unsafe-inline" not in PAGE_POLICY
    assert "<script>" not in page.text


async def test_a_partial_is_one_block_of_the_same_page(web: httpx.AsyncClient) -> None:
    whole = await web.get("/")
    block = await web.get("/", headers={"x-topup-partial": "main"})
    assert "<html" in whole.text and "<html" not in block.text
    assert "<h1>" in block.text and block.text.strip() in whole.text


async def test_a_bug_on_a_page_is_a_page_with_a_reference_and_no_detail(
    web: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await web.get("/test-bug", headers={"accept-language": "ms"})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "secret detail" not in answer.text and "Traceback" not in answer.text
    assert "Rujukan:" in answer.text  # the reference, in the visitor's language
    assert any("internal error" in record.message for record in caplog.records)


async def test_a_head_of_a_page_is_answered_as_its_get(web: httpx.AsyncClient) -> None:
    answer = await web.head("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")


async def test_a_static_file_of_its_version_is_kept_a_year_and_sent_compressed(
    web: httpx.AsyncClient,
) -> None:
    page = await web.get("/")
    url = next(part.split('"')[0] for part in page.text.split('href="')[1:] if "base.css" in part)
    assert "?v=" in url
    answer = await web.get(url, headers={"accept-encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers["content-type"].startswith("text/css")
    assert ":root" in answer.text  # httpx decompressed it
    again = await web.get(url, headers={"if-none-match": answer.headers["etag"]})
    assert again.status_code == 304


async def test_a_static_file_of_another_version_is_kept_a_day_and_a_missing_one_is_404(
    web: httpx.AsyncClient,
) -> None:
    old = await web.get("/static/shared/base.css?v=0000000000")
    missing = await web.get("/static/shared/nothing.css")
    escape = await web.get("/static/shared/../../rendering.py")
    assert old.headers["cache-control"] == "public, max-age=86400"
    assert (missing.status_code, escape.status_code) == (404, 404)
