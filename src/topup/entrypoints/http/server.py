"""``topup serve``: uvicorn running the API, believing ``X-Forwarded-For`` only from the
proxies of ``TOPUP_TRUSTED_PROXIES`` (uvicorn itself would trust 127.0.0.1 by default)."""

from __future__ import annotations

from topup.bootstrap import load_settings
from topup.settings import parse_trusted_proxies

APP_FACTORY = "topup.entrypoints.site:site_from_environment"


def run_server(*, host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn  # only the server needs it: the CLI starts faster without

    trusted = parse_trusted_proxies(load_settings().trusted_proxies)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="info",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=[str(network) for network in trusted],
    )
