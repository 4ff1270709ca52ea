"""What `topup serve` needs around the server: a port check before anything starts, a clean stop
on Ctrl-C or SIGTERM, and (`--with-worker`, for `make run`) a worker stopped after the server.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group, `make` included, and
`make` then dies of it (exit 130) whatever its recipe does. So with `--with-worker` this process
takes a process group of its own and makes it the terminal's foreground group for as long as it
runs (as a shell does for a job): Ctrl-C reaches only the server; the server stops, then the
worker is asked to stop (SIGTERM) and waited for, the terminal is given back, and `make run`
exits 0. (The old recipe's `trap 'kill 0' INT TERM EXIT` re-entered its own trap on the SIGTERM
it sent itself until dash overflowed its stack: the "Segmentation fault", and `kill 0` also
killed `make`: the exit 143.)"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from types import FrameType

from topup.entrypoints.cli.output import EXIT_FAILED, console, fail

WORKER_STOP_TIMEOUT_S = 30.0  # a worker finishing its batch; then it is killed
WORKER_COMMAND = ("-c", "from topup.entrypoints.cli import main; main()", "worker")


class Stopped(Exception):  # noqa: N818 - a signal's way out of the server, not an error
    """SIGTERM reached the server: leave it like Ctrl-C (KeyboardInterrupt) does."""


def check_port_free(host: str, port: int) -> None:
    """Bind the address as the server will (SO_REUSEADDR) and let it go; one error line and
    exit 1 if another process listens there already."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise fail(
                    "address_unavailable",
                    f"cannot listen on {host}:{port}: {error.strerror}",
                    EXIT_FAILED,
                    {"host": host, "port": str(port), "reason": error.strerror or ""},
                ) from None
            raise fail(
                "port_in_use",
                f"{host}:{port} is in use by another process (another `make run` or "
                "`topup serve`?): stop it, or choose another port (make run PORT=8001)",
                EXIT_FAILED,
                {"host": host, "port": str(port)},
            ) from None


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the server gracefully (uvicorn's own handling) and then end the
    block quietly instead of a traceback or death by signal (uvicorn raises them again once it
    has shut down)."""

    def on_terminate(_signal: int, _frame: FrameType | None) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    except (KeyboardInterrupt, Stopped):
        console().print("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def terminal_to_ourselves() -> Iterator[None]:
    """Make this process's own group the terminal's foreground group while the block runs (see
    the module's docstring); nothing to do without a terminal or when not in the foreground."""
    try:
        terminal = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        yield
        return
    try:
        previous = os.tcgetpgrp(terminal)
        if previous != os.getpgrp():  # run in the background: leave the terminal alone
            yield
            return
        with contextlib.suppress(PermissionError):  # already a group leader
            os.setpgid(0, 0)
        _set_foreground(terminal, os.getpgrp())
        try:
            yield
        finally:
            _set_foreground(terminal, previous)
    finally:
        os.close(terminal)


def _set_foreground(terminal: int, group: int) -> None:
    """tcsetpgrp from a group that is not (or no longer) in the foreground sends us SIGTTOU."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, group)
    except OSError:  # the terminal went away, or its old group is gone
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


@contextlib.contextmanager
def worker_process() -> Iterator[subprocess.Popen[bytes]]:
    """`topup worker` in a process group of its own (Ctrl-C reaches the server only); killed if
    the block ends without stopping it."""
    worker = subprocess.Popen([sys.executable, *WORKER_COMMAND], process_group=0)  # noqa: S603
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def stop(worker: subprocess.Popen[bytes]) -> None:
    """Ask the worker to stop (SIGTERM: it finishes what it holds) and wait for it."""
    if worker.poll() is not None:
        return
    console().print("stopping the worker")
    worker.terminate()
    try:
        worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
