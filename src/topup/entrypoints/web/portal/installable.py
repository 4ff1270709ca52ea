"""The installable app: manifest, icons, service worker, offline page; channel ``app`` (R5).

- ``/manifest.webmanifest``: the web app manifest (Chromium's installability criteria: a name,
  icons of 192 and 512 pixels, one maskable, a start URL, ``standalone``), in the visitor's
  language.
- ``/app``: the manifest's start URL. It remembers in a cookie that this browser opened the
  installed app (``sales_channel.remember_app``), so that what it renews is sold through channel
  ``app``, then goes to the home page.
- ``/service-worker.js``: served from the root so that its scope is the whole site
  (``Service-Worker-Allowed: /``), never cached by the browser's HTTP cache (``no-cache``: an
  update is seen at once). It keeps the shell (the portal's and the shared CSS, scripts and
  icons, at their versioned URLs, and ``/offline``) and answers a navigation that fails offline
  with the offline page. It never keeps a page (accounts, renewals, status, receipts, checkout:
  every page is personal or may be), never touches a request other than GET, and never queues a
  payment: a payment sent offline fails, and the subscriber sends it again (one checkout = one
  idempotency key, so it cannot be charged twice). A Web Push message (a reminder: title, body,
  link, tag) is shown as a notification; its tag is the reminder's, so a repeat replaces it
  rather than showing it twice; a tap opens the link (this site's pages only).
- ``/offline``: what the service worker shows when the network is gone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from topup.entrypoints.web.shared.language import page_language
from topup.entrypoints.web.shared.rendering import SHARED_STATIC, renderer_of
from topup.entrypoints.web.shared.sales_channel import remember_app
from topup.entrypoints.web.shared.sessions import SessionCookies
from topup.i18n import language_tag, translations

router = APIRouter()

HERE = Path(__file__).parent
PORTAL_STATIC = HERE / "static" / "portal"
SERVICE_WORKER_SOURCE = PORTAL_STATIC / "app" / "service-worker.js"
START_PATH = "/app"
OFFLINE_PATH = "/offline"
MANIFEST_MEDIA_TYPE = "application/manifest+json"
THEME_COLOUR = "#083f78"  # base.css --brand-dark: the header's colour
BACKGROUND_COLOUR = "#f3f5f8"  # base.css --wash: the pages' background
SHORT_NAME = "topup"  # the brand, the same in every language
SHELL_SUFFIXES = (".css", ".js", ".png", ".svg", ".woff2")
SHELL_FILES_MAX = 200  # a bound on what the service worker keeps at install
ICONS = (  # (file under static/portal/app, size, purpose)
    ("icon-192.png", 192, "any"),
    ("icon-512.png", 512, "any"),
    ("icon-maskable-192.png", 192, "maskable"),
    ("icon-maskable-512.png", 512, "maskable"),
)
NO_CACHE = "no-cache"
# The worker's own policy: it may fetch this site's files (to keep the shell), nothing else.
SERVICE_WORKER_POLICY = "default-src 'none'; connect-src 'self'; script-src 'self'; img-src 'self'"
NOTIFICATION_ICON = "portal/app/icon-192.png"  # shown beside a reminder's notification


@router.get(START_PATH)
async def start(request: Request) -> Response:
    """The installed app opens here: what this browser renews is sold through channel ``app``."""
    cookies: SessionCookies = request.app.state.session_cookies
    response = RedirectResponse("/", status_code=303)
    remember_app(response, secure=cookies.secure)
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/manifest.webmanifest")
async def manifest(request: Request) -> Response:
    locale = page_language(request)
    texts = translations(locale)
    static = renderer_of(request).static
    body = {
        "id": START_PATH,
        "name": texts.gettext("topup: renew your data card"),
        "short_name": SHORT_NAME,
        "description": texts.gettext(
            "Renew your data card, see its balance in real time and its history."
        ),
        "lang": language_tag(locale),
        "dir": "ltr",
        "start_url": START_PATH,
        "scope": "/",
        "display": "standalone",
        "theme_color": THEME_COLOUR,
        "background_color": BACKGROUND_COLOUR,
        "categories": ["utilities", "finance"],
        "icons": [
            {
                "src": static.url(f"portal/app/{name}"),
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": purpose,
            }
            for name, size, purpose in ICONS
        ],
    }
    return Response(
        json.dumps(body, ensure_ascii=False, indent=1),
        media_type=MANIFEST_MEDIA_TYPE,
        headers={
            "cache-control": NO_CACHE,
            "vary": "Accept-Language, Cookie",
            "content-language": language_tag(locale),
        },
    )


@dataclass(frozen=True, slots=True)
class ServiceWorker:
    body: str
    version: str


def shell_urls(request: Request) -> list[str]:
    """The versioned URLs of the shared and the portal's static files: what the app's shell is."""
    static = renderer_of(request).static
    names = []
    for prefix, folder in (("shared", SHARED_STATIC), ("portal", PORTAL_STATIC)):
        for path in sorted(folder.rglob("*")):
            kept = path.is_file() and path.suffix in SHELL_SUFFIXES
            if kept and path != SERVICE_WORKER_SOURCE:
                names.append(f"{prefix}/{path.relative_to(folder).as_posix()}")
    return [static.url(name) for name in names[:SHELL_FILES_MAX]]


def service_worker(request: Request) -> ServiceWorker:
    """The worker's script: its constants (the shell, its version), then its code. Made once per
    process: the files do not change while it runs."""
    made: ServiceWorker | None = getattr(request.app.state, "service_worker", None)
    if made is not None:
        return made
    shell = shell_urls(request)
    code = SERVICE_WORKER_SOURCE.read_text(encoding="utf-8")
    version = hashlib.sha256(json.dumps([shell, code]).encode()).hexdigest()[:12]
    constants = (
        f"const VERSION = {json.dumps(version)};\n"
        f"const OFFLINE_URL = {json.dumps(OFFLINE_PATH)};\n"
        f"const SHELL = {json.dumps(shell, indent=1)};\n"
        f"const ICON = {json.dumps(renderer_of(request).static.url(NOTIFICATION_ICON))};\n"
    )
    made = ServiceWorker(constants + code, version)
    request.app.state.service_worker = made
    return made


@router.get("/service-worker.js")
async def service_worker_script(request: Request) -> Response:
    return Response(
        service_worker(request).body,
        media_type="text/javascript",
        headers={
            "service-worker-allowed": "/",
            "cache-control": NO_CACHE,
            "content-security-policy": SERVICE_WORKER_POLICY,
        },
    )


@router.get("/favicon.ico")
async def favicon() -> Response:
    return FileResponse(
        PORTAL_STATIC / "app" / "favicon-32.png",
        media_type="image/png",
        headers={"cache-control": "public, max-age=86400"},
    )


@router.get(OFFLINE_PATH)
async def offline(request: Request) -> Response:
    return renderer_of(request).render(
        request, "portal/installable/offline.html", headers={"cache-control": NO_CACHE}
    )
