"""The long-running processes: the HTTP server and the worker."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from topup.entrypoints.cli.output import JsonOption, console, print_json, run

if TYPE_CHECKING:
    from topup.bootstrap import Application


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each with its own pool).", min=1, max=64)
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = False,
    check_port: Annotated[
        bool,
        typer.Option("--check-port", help="Only check that the port is free (exit 1 if not)."),
    ] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--with-worker",
            help="Also run `topup worker`; Ctrl-C stops the server, then the worker (`make run`).",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API v1 (docs at /api/docs) until stopped."""
    from topup.bootstrap import load_settings
    from topup.entrypoints.cli import processes

    load_settings()  # a bad setting is one error line before anything starts (setting_invalid)
    processes.check_port_free(host, port)
    if check_port:
        console().print(f"{host}:{port} is free")
        return
    if not with_worker:
        with processes.stopped_by_signals():
            _uvicorn(host=host, port=port, workers=workers, access_log=access_log)
        return
    with processes.terminal_to_ourselves(), processes.worker_process() as worker_process:
        with processes.stopped_by_signals():
            _uvicorn(host=host, port=port, workers=workers, access_log=access_log)
        processes.stop(worker_process)


def _uvicorn(*, host: str, port: int, workers: int, access_log: bool) -> None:
    from topup.entrypoints.http.server import run_server

    run_server(host=host, port=port, workers=workers, access_log=access_log)


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
            console().print(f"{kind}: " + " ".join(f"{key}={value}" for key, value in data.items()))
        sys.stdout.flush()

    async def work(application: Application) -> int:
        if once:
            return await work_once(application.services)
        await run_forever(application.services)
        return 0

    done = run(work, on_event=on_event)
    if once and as_json:
        print_json({"done": done, "events": events})
