"""A worker process killed with SIGKILL in the middle of an activation: after a restart the card is
credited exactly once. Real `topup` subprocesses, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from tests import conftest
from tests.e2e.commands import COMMAND_TIMEOUT_S, topup_executable
from topup.adapters.db import tables as t

CARD = "0123456789"  # the demo's active prepaid card, +60123456789
PAY = ("--card-number", "4242424242424242", "--expiry", "12/30", "--cvc", "123")
PACK_QUOTA_MB = 5 * 1024  # pack_5gb_7d
PACK_VALIDITY_DAYS = 7
NETWORK_LATENCY_S = 3.0  # the network call the worker is killed in
JOB_LEASE_S = 2.0
IN_FLIGHT_WAIT_S = 1.0  # after the claim: the network call is under way, far from done
CLAIM_WAIT_S_MAX = 30.0
RESTARTS_MAX = 3


def cli_environment(database_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    environment.update(
        TOPUP_DATABASE_URL=database_url,
        TOPUP_SECRET_KEY=conftest._valid_test_key(),
        TOPUP_NETWORK_LATENCY_S=str(NETWORK_LATENCY_S),
        TOPUP_NETWORK_DELAY_S="0",
        TOPUP_JOB_LEASE_S=str(JOB_LEASE_S),
        TOPUP_GATEWAY_LATENCY_S="0",
    )
    return environment


def run_json(arguments: list[str], environment: dict[str, str], directory: Path) -> dict[str, Any]:
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
    lines = completed.stdout.splitlines()
    assert len(lines) == 1, completed.stdout
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def activation_job(database_url: str, renewal_id: str) -> tuple[str, int]:
    """(status, claims) of the renewal's activation job, read straight from the database."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(t.jobs.c.status, t.jobs.c.claims).where(
                    t.jobs.c.subject_id == renewal_id, t.jobs.c.kind == "activate"
                )
            ).one()
    finally:
        engine.dispose()
    return str(row.status), int(row.claims)


def wait_for_claim(database_url: str, renewal_id: str, worker: subprocess.Popen[bytes]) -> float:
    """Wait until the worker has claimed the job; returns when (time.monotonic) it was seen."""
    deadline = time.monotonic() + CLAIM_WAIT_S_MAX
    while time.monotonic() < deadline:
        if activation_job(database_url, renewal_id)[1] >= 1:
            return time.monotonic()
        assert worker.poll() is None, "the worker exited before claiming the job"
        time.sleep(0.05)
    pytest.fail(f"the worker did not claim the job within {CLAIM_WAIT_S_MAX} s")


def test_worker_killed_mid_activation_credits_the_card_exactly_once_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    environment = cli_environment(database_url)

    def topup(*arguments: str) -> dict[str, Any]:
        return run_json(list(arguments), environment, tmp_path)

    assert topup("init", "--demo")["demo"]["cards_added"] == 6
    before = topup("balance", CARD)
    renewal = topup("renew", CARD, "pack_5gb_7d", *PAY)
    assert renewal["status"] == "activating"
    renewal_id = renewal["id"]

    log_path = tmp_path / "killed-worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [topup_executable(), "worker", "--json"],
            env=environment,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            claimed_at = wait_for_claim(database_url, renewal_id, worker)
            time.sleep(IN_FLIGHT_WAIT_S)
            assert worker.poll() is None, log_path.read_text()
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=COMMAND_TIMEOUT_S)
    assert worker.returncode == -signal.SIGKILL
    assert "activation_completed" not in log_path.read_text()

    # Killed inside the network call: claimed once, nothing recorded, nothing credited.
    assert activation_job(database_url, renewal_id) == ("queued", 1)
    assert topup("status", renewal_id)["status"] == "activating"
    assert topup("balance", CARD)["data_quota_mb"] == before["data_quota_mb"]

    time.sleep(max(0.0, claimed_at + JOB_LEASE_S + 0.2 - time.monotonic()))
    for _ in range(RESTARTS_MAX):
        worked = topup("worker", "--once")
        if topup("status", renewal_id)["status"] == "completed":
            break
        time.sleep(JOB_LEASE_S / 2)
    else:
        pytest.fail(f"not completed after {RESTARTS_MAX} restarts; last run: {worked}")

    assert activation_job(database_url, renewal_id) == ("done", 2)
    after = topup("balance", CARD)
    assert after["data_quota_mb"] == before["data_quota_mb"] + PACK_QUOTA_MB
    extended = dt.datetime.fromisoformat(after["validity_end"]) - dt.datetime.fromisoformat(
        before["validity_end"]
    )
    assert extended == dt.timedelta(days=PACK_VALIDITY_DAYS)
    audit = topup("audit")  # also: a completed renewal has one capture and one activation
    assert audit["clean"] is True, audit["violations"]
