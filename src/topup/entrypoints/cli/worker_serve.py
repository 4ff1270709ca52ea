"""The long-running processes: the HTTP server and the worker."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from topup.bootstrap import Application
from topup.entrypoints.cli.output import JsonOption, console, print_json, run


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each with its own pool).", min=1, max=64)
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = False,
) -> None:
    """Serve the HTTP API v1 (docs at /api/docs) until stopped."""
    import uvicorn

    uvicorn.run(
        "topup.entrypoints.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="info",
    )


def worker(
    once: Annotated[bool, typer.Option("--once", help="Do what is due now, then exit.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run activations, refunds, payment checks and card lifecycle changes."""
    from topup.entrypoints.worker import run_forever, work_once

    events: list[dict[str, str]] = []

    def on_event(kind: str, data: dict[str, str]) -> None:
        if as_json and once:
            events.append({"event": kind, **data})  # printed with the summary: one JSON object
            return
        if as_json:
            print_json({"event": kind, **data})  # a worker that runs on: one object per line
        else:
            console.print(f"{kind}: " + " ".join(f"{key}={value}" for key, value in data.items()))
        sys.stdout.flush()

    async def work(application: Application) -> int:
        if once:
            return await work_once(application.services)
        await run_forever(application.services)
        return 0

    done = run(work, on_event=on_event)
    if once and as_json:
        print_json({"done": done, "events": events})
