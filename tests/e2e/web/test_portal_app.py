"""The installable app over HTTP: its manifest (Chromium's criteria), icons, service worker (the
shell only, never a page, never a POST), offline page, and channel ``app`` once opened."""

from __future__ import annotations

import io
import json
import re

import httpx
from PIL import Image

from tests.e2e.web.test_portal_renewal import pay_page
from tests.e2e.web.test_portal_renewal_payment import form_of, token_for
from topup.bootstrap import Application
from topup.entrypoints.web.shared.sales_channel import APP_COOKIE


async def test_every_page_links_the_manifest_and_registers_the_service_worker(
    site: httpx.AsyncClient,
) -> None:
    page = await site.get("/")

    assert '<link rel="manifest" href="/manifest.webmanifest"' in page.text
    assert '<meta name="theme-color" content="#083f78">' in page.text
    found = re.search(r'<script src="(/static/portal/app/register\.js\?v=\w+)" defer>', page.text)
    assert found is not None
    script = await site.get(found.group(1))
    assert script.status_code == 200
    assert 'register("/service-worker.js", { scope: "/" })' in script.text


async def test_the_manifest_meets_chromiums_installability_criteria(
    site: httpx.AsyncClient,
) -> None:
    answer = await site.get("/manifest.webmanifest")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/manifest+json")
    manifest = json.loads(answer.text)
    assert manifest["name"] and manifest["short_name"] == "topup"
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == (
        "/app",
        "/",
        "standalone",
    )
    assert manifest["theme_color"] and manifest["background_color"] and manifest["lang"] == "en"
    sizes = set()
    for icon in manifest["icons"]:
        image = await site.get(icon["src"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        width, height = Image.open(io.BytesIO(image.content)).size
        assert icon["sizes"] == f"{width}x{height}"
        sizes.add((width, icon["purpose"]))
    assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes


async def test_the_manifest_speaks_the_visitors_language(site: httpx.AsyncClient) -> None:
    english = json.loads((await site.get("/manifest.webmanifest")).text)
    chinese = json.loads(
        (await site.get("/manifest.webmanifest", headers={"accept-language": "zh-CN"})).text
    )

    assert chinese["lang"] == "zh-Hans"
    assert chinese["name"] != english["name"]
    assert re.search(r"[\u4e00-\u9fff]", chinese["name"])


async def test_the_service_worker_is_served_from_the_root_and_never_cached_by_http(
    site: httpx.AsyncClient,
) -> None:
    answer = await site.get("/service-worker.js")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["service-worker-allowed"] == "/"
    assert answer.headers["cache-control"] == "no-cache"
    # Its own policy lets it fetch the shell from this site (the API's default would not).
    assert "connect-src 'self'" in answer.headers["content-security-policy"]


async def test_the_service_worker_keeps_the_shell_and_the_offline_page_only(
    site: httpx.AsyncClient,
) -> None:
    script = (await site.get("/service-worker.js")).text
    found = re.search(r"const SHELL = (\[.*?\]);", script, re.DOTALL)
    assert found is not None
    shell = json.loads(found.group(1))

    assert 'const OFFLINE_URL = "/offline";' in script
    assert all(url.startswith("/static/") and "?v=" in url for url in shell)
    assert any(url.startswith("/static/shared/base.css?v=") for url in shell)
    assert any(url.startswith("/static/portal/app/icon-512.png?v=") for url in shell)
    for url in shell:
        assert (await site.get(url)).status_code == 200, url
    # Pages are answered from the network alone, and only GET is ever looked at.
    assert 'if (request.method !== "GET") return;' in script
    assert "cache.put" not in script
    assert "sync" not in script.lower().replace("async", "")


async def test_the_offline_page_says_so_in_the_visitors_language(site: httpx.AsyncClient) -> None:
    english = await site.get("/offline")
    malay = await site.get("/offline", headers={"accept-language": "ms"})

    assert english.status_code == 200
    assert "You are offline" in english.text
    assert malay.headers["content-language"] == "ms"
    assert "You are offline" not in malay.text


async def test_opening_the_app_remembers_channel_app_and_goes_home(
    site: httpx.AsyncClient,
) -> None:
    before = await site.get("/")
    assert APP_COOKIE not in before.cookies

    opened = await site.get("/app")

    assert opened.status_code == 303 and opened.headers["location"] == "/"
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith(f"{APP_COOKIE}=1;")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert site.cookies.get(APP_COOKIE) == "1"


async def test_the_favicon_is_the_apps_icon(site: httpx.AsyncClient) -> None:
    answer = await site.get("/favicon.ico")

    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).size == (32, 32)


async def test_a_renewal_made_after_opening_the_app_is_sold_through_channel_app(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    await site.get("/app")
    path, page = await pay_page(site)
    token = await token_for(site, "4242424242424242")

    paid = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))

    assert paid.status_code == 303
    renewal_id = paid.headers["location"].removeprefix("/renewals/").split("/")[0]
    async with demo_app.services.unit_of_work() as uow:
        renewal = await uow.renewals.get(renewal_id)
    assert renewal is not None and renewal.channel == "app"


async def test_a_renewal_made_on_the_site_is_sold_through_channel_web(
    site: httpx.AsyncClient, demo_app: Application
) -> None:
    path, page = await pay_page(site)
    token = await token_for(site, "4242424242424242")

    paid = await site.post(path, data=form_of(page, method="credit_card", payment_token=token))

    renewal_id = paid.headers["location"].removeprefix("/renewals/").split("/")[0]
    async with demo_app.services.unit_of_work() as uow:
        renewal = await uow.renewals.get(renewal_id)
    assert renewal is not None and renewal.channel == "web"
