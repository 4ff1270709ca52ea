"""Schemathesis against the OpenAPI document, over real HTTP to `topup serve` on a demo
database: no 5xx, and every response matches its documented status, media type and schema.
Bounded (a few cases per operation, derandomised) so that it fits in `make test`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from topup.entrypoints.api.app import openapi_document

EXAMPLES_PER_OPERATION = 12
SERVER_START_S = 60
schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _topup() -> list[str]:
    return [str(Path(sys.executable).with_name("topup"))]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("schemathesis")
    environment = {
        **os.environ,
        "TOPUP_DATABASE_URL": f"sqlite:///{directory / 'topup.sqlite3'}",
        "TOPUP_SECRET_KEY_FILE": str(directory / "secret.key"),
        "TOPUP_SANDBOX_JOURNAL": "",
        "TOPUP_MAIL_OUTBOX": str(directory / "outbox"),
        "TOPUP_SANDBOX_SMS_OUTBOX": str(directory / "sms.jsonl"),
        "TOPUP_GATEWAY_LATENCY_S": "0",
        "TOPUP_NETWORK_LATENCY_S": "0",
    }
    subprocess.run([*_topup(), "init", "--demo"], env=environment, check=True, capture_output=True)
    port = _free_port()
    process = subprocess.Popen(
        [*_topup(), "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case, server: str
) -> None:
    case.call_and_validate(base_url=server, checks=CHECKS)
