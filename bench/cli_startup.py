"""Start-up time of the `topup` command, next to the same machine's bare Python start-up.

What it does, in order:

1. makes a scratch directory with its own SQLite database and runs ``topup init --demo`` there
   once (not timed);
2. runs each of ``python -c pass`` (the reference), ``topup --help`` and ``topup cards`` ``--runs``
   times, interleaved so that other load on a shared machine falls on all three alike, and takes
   the wall time of each run;
3. prints, for each, the median and the fastest run in milliseconds and the median as a ratio to
   the reference's median (or, with ``--json``, one JSON object);
4. with ``--imports``, also the modules that ``topup --help`` spends the most time importing
   (``python -X importtime``, cumulative, top 15).

A benchmark prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS_DEFAULT = 15
IMPORTS_SHOWN = 15
COMMAND_TIMEOUT_S = 60


def _topup() -> str:
    beside_python = Path(sys.executable).with_name("topup")
    if not beside_python.exists():
        sys.exit("the topup command is not installed beside this Python (make install)")
    return str(beside_python)


def _environment(directory: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    environment["TOPUP_DATABASE_URL"] = f"sqlite:///{directory / 'topup.sqlite3'}"
    environment["COLUMNS"] = "80"
    return environment


def _wall_time_s(command: list[str], environment: dict[str, str], directory: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        command,
        env=environment,
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S,
        check=True,
    )
    return time.perf_counter() - started


def _slowest_imports(environment: dict[str, str], directory: Path) -> list[tuple[str, float]]:
    """(module, cumulative ms) of the modules `topup --help` takes longest to import."""
    program = (
        "import sys; sys.argv = ['topup', '--help']; from topup.entrypoints.cli import main; main()"
    )
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", program],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    found: list[tuple[str, float]] = []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (
            part.strip() for part in line.removeprefix("import time:").split("|")
        )
        found.append((name.strip(), int(cumulative) / 1000))
    return sorted(found, key=lambda item: item[1], reverse=True)[:IMPORTS_SHOWN]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="Runs of each command.")
    parser.add_argument("--imports", action="store_true", help="Also the slowest imports.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    arguments = parser.parse_args()
    topup = _topup()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "topup --help": [topup, "--help"],
        "topup cards": [topup, "cards"],
    }
    with tempfile.TemporaryDirectory(prefix="topup-cli-startup-") as scratch:
        directory = Path(scratch)
        environment = _environment(directory)
        subprocess.run(
            [topup, "init", "--demo"],
            env=environment,
            cwd=directory,
            stdout=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT_S,
            check=True,
        )
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(arguments.runs):
            for name, command in commands.items():
                times[name].append(_wall_time_s(command, environment, directory))
        imports = _slowest_imports(environment, directory) if arguments.imports else []
    reference = statistics.median(times["python -c pass"])
    figures = {
        name: {
            "median_ms": round(statistics.median(runs) * 1000, 1),
            "fastest_ms": round(min(runs) * 1000, 1),
            "ratio": round(statistics.median(runs) / reference, 2),
        }
        for name, runs in times.items()
    }
    if arguments.json:
        print(json.dumps({"runs": arguments.runs, "commands": figures, "imports": imports}))
        return
    print(
        f"{'command':<16} {'median ms':>10} {'fastest ms':>11} {'ratio':>6}   ({arguments.runs} runs)"
    )
    for name, figure in figures.items():
        print(
            f"{name:<16} {figure['median_ms']:>10.1f} {figure['fastest_ms']:>11.1f} "
            f"{figure['ratio']:>6.2f}"
        )
    if imports:
        print("\nslowest imports of `topup --help` (cumulative ms):")
        for name, milliseconds in imports:
            print(f"  {milliseconds:>8.1f}  {name}")


if __name__ == "__main__":
    main()
