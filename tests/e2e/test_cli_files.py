"""Files the `topup` command creates on disk, and how `topup serve` treats its port."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
from pathlib import Path

from tests import conftest
from tests.e2e.commands import COMMAND_TIMEOUT_S, topup_executable
from tests.e2e.test_cli import EXIT_FAILED, EXIT_INPUT, Cli, assert_one_error_line

OWNER_ONLY = 0o600
OWNER_ONLY_DIRECTORY = 0o700
LOOSE_UMASK = 0o022  # what most shells have: files readable by everyone unless made otherwise


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_its_wal_files_and_var_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    database = tmp_path / "var" / "topup.sqlite3"
    cli = Cli(f"sqlite:///{database}", tmp_path)
    previous = os.umask(LOOSE_UMASK)
    try:
        assert cli.json("init")["migrated"] is True
        connection = sqlite3.connect(database)  # the file is in WAL mode: -wal and -shm appear
        try:
            connection.execute("CREATE TABLE probe (x INTEGER)")
            connection.commit()
            wal_files = [Path(f"{database}-wal"), Path(f"{database}-shm")]
            assert all(path.exists() for path in wal_files)
            assert {path.name: mode(path) for path in wal_files} == {
                path.name: OWNER_ONLY for path in wal_files
            }
        finally:
            connection.close()
    finally:
        os.umask(previous)
    assert mode(database) == OWNER_ONLY
    assert mode(database.parent) == OWNER_ONLY_DIRECTORY


def _serve(
    *arguments: str, directory: Path, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    environment["TOPUP_SECRET_KEY"] = conftest._valid_test_key()
    environment.update(settings or {})
    return subprocess.run(
        [topup_executable(), "serve", *arguments],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for arguments in (("--check-port",), ("--with-worker",), ()):
            completed = _serve("--port", port, *arguments, directory=tmp_path)
            assert_one_error_line(completed, "port_in_use")
            assert completed.returncode == EXIT_FAILED
            assert f"127.0.0.1:{port}" in completed.stderr
    assert not (tmp_path / "var").exists()  # no database, no worker: nothing started


def test_a_free_port_passes_the_check(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    completed = _serve("--port", port, "--check-port", directory=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"127.0.0.1:{port} is free"


def test_a_trusted_proxy_that_is_not_an_address_is_one_error_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    for arguments in (("--check-port",), ()):
        completed = _serve(
            "--port",
            "1",
            *arguments,
            directory=tmp_path,
            settings={"TOPUP_TRUSTED_PROXIES": "127.0.0.1,foo"},
        )
        assert_one_error_line(completed, "setting_invalid")
        assert completed.returncode == EXIT_INPUT
        assert "TOPUP_TRUSTED_PROXIES" in completed.stderr
        assert "'foo'" in completed.stderr
    assert not (tmp_path / "var").exists()  # nothing started


def test_any_setting_that_is_not_valid_is_one_error_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    cli = Cli("sqlite:///var/topup.sqlite3", tmp_path)
    cli.environment["TOPUP_WORKER_BATCH_SIZE"] = "many"

    completed = cli.run("plans")

    assert_one_error_line(completed, "setting_invalid")
    assert completed.returncode == EXIT_INPUT
    assert "TOPUP_WORKER_BATCH_SIZE" in completed.stderr
