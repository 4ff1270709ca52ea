"""Rate limits shared across two real server processes through Redis (issue 4, behaviour 4): with
TOPUP_REDIS_URL set, card look-ups sent in turn to two `topup serve` processes are counted
together, so the limit of 5 a minute refuses the 6th request of all, not the 11th (which is what
two processes counting in their own memory would do)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis

from tests import conftest
from tests.e2e.commands import COMMAND_TIMEOUT_S, topup_executable

LOOKUPS_PER_MINUTE_MAX = 5
REQUESTS = 2 * LOOKUPS_PER_MINUTE_MAX
WINDOW_S = 60
WINDOW_LEFT_S_MIN = 10  # start only with this much of the minute left, so one window holds all
SERVER_START_S_MAX = 30.0
SERVER_STOP_S_MAX = 10.0
REQUEST_TIMEOUT_S = 10.0
OWN_KEYS = "topup:rate:card_lookup:ip:127.0.0.1:*"  # what the servers count this test's requests in


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def delete_own_keys(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        found = list(client.scan_iter(match=OWN_KEYS))
        if found:
            client.delete(*found)
    finally:
        client.close()


def run_json(arguments: list[str], environment: dict[str, str], directory: Path) -> Any:
    completed = subprocess.run(
        [topup_executable(), *arguments, "--json"],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


class Server:
    def __init__(self, port: int, environment: dict[str, str], directory: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._log_path = directory / f"serve-{port}.log"
        self._log: IO[bytes] = self._log_path.open("wb")
        self.process = subprocess.Popen(
            [topup_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            cwd=directory,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")

    def wait_until_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server on port {self.port} exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the server on port {self.port} did not become healthy:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=SERVER_STOP_S_MAX)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=SERVER_STOP_S_MAX)
        self._log.close()


@pytest.fixture
def environment(tmp_path: Path, redis_url: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    values.update(
        TOPUP_DATABASE_URL=f"sqlite:///{tmp_path / 'topup.sqlite3'}",
        TOPUP_REDIS_URL=redis_url,
        TOPUP_SECRET_KEY=conftest._valid_test_key(),
        TOPUP_SANDBOX_JOURNAL="",
        TOPUP_SANDBOX_SMS_OUTBOX="",
        TOPUP_MAIL_OUTBOX=str(tmp_path / "outbox"),
        TOPUP_CARD_LOOKUP_PER_MINUTE_MAX=str(LOOKUPS_PER_MINUTE_MAX),
    )
    return values


@pytest.fixture
def servers(
    environment: dict[str, str], tmp_path: Path, redis_url: str
) -> Iterator[tuple[Server, Server]]:
    run_json(["init", "--demo"], environment, tmp_path)
    started: list[Server] = []
    try:
        for _ in range(2):
            started.append(Server(free_port(), environment, tmp_path))
        deadline = time.monotonic() + SERVER_START_S_MAX
        for server in started:
            server.wait_until_healthy(deadline)
        delete_own_keys(redis_url)
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        delete_own_keys(redis_url)


def wait_for_a_fresh_window() -> None:
    left_s = WINDOW_S - time.time() % WINDOW_S
    if left_s < WINDOW_LEFT_S_MIN:
        time.sleep(left_s + 0.2)


def test_card_lookups_sent_to_two_servers_are_limited_together(
    servers: tuple[Server, Server], environment: dict[str, str], tmp_path: Path
) -> None:
    cards = run_json(["cards"], environment, tmp_path)["cards"]
    card = next(card["msisdn"] for card in cards if card["status"] == "active")
    wait_for_a_fresh_window()
    answers = [
        httpx.get(
            f"{servers[index % 2].base_url}/api/v1/cards/{card}/plans", timeout=REQUEST_TIMEOUT_S
        )
        for index in range(REQUESTS)
    ]
    statuses = [answer.status_code for answer in answers]
    allowed = [200] * LOOKUPS_PER_MINUTE_MAX
    assert statuses == allowed + [429] * (REQUESTS - LOOKUPS_PER_MINUTE_MAX), [
        answer.text for answer in answers
    ]
    for refused in answers[LOOKUPS_PER_MINUTE_MAX:]:
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_S
