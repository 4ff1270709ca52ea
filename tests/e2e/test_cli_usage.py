"""`topup usage import`: a summary, the bad lines by number, exit 1 when any line was bad, and a
re-sent file that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import EXIT_FAILED, Cli, one_json_object


def test_usage_import_applies_good_lines_reports_bad_ones_and_is_applied_once(
    database_url: str, tmp_path: Path
) -> None:
    cli = Cli(database_url, tmp_path)
    cli.json("init", "--demo")
    records = tmp_path / "usage.jsonl"
    lines = [
        {
            "record_id": "n1",
            "card": "+60123456789",
            "used_at": "2026-01-02T03:04:05Z",
            "data_used_mb": 1000,
        },
        {
            "record_id": "n2",
            "card": "0123456789",
            "used_at": "2026-01-02T04:04:05+08:00",
            "data_used_mb": 48,
        },
    ]
    text = "\n".join(json.dumps(line) for line in lines)
    records.write_text(
        text
        + '\n{"record_id": "n3"\n'
        + '{"record_id": "n4", "card": "+60123456789", "used_at": "2026-01-02T03:04:05Z", "data_used_mb": "lots"}\n'
    )
    completed = cli.run("usage", "import", str(records), "--json")
    assert completed.returncode == EXIT_FAILED, completed.stderr
    summary = one_json_object(completed.stdout)
    assert (summary["applied"], summary["debited_mb"], summary["bad_lines"]) == (2, 1048, 2)
    assert [(p["line"], p["code"]) for p in summary["problems"]] == [
        (3, "usage_line_malformed"),
        (4, "usage_data_invalid"),
    ]
    assert cli.json("balance", "+60123456789")["data_quota_mb"] == 2048 - 1048
    again = one_json_object(cli.run("usage", "import", str(records), "--json").stdout)
    assert (again["applied"], again["duplicates"]) == (0, 2)
    assert cli.json("balance", "+60123456789")["data_quota_mb"] == 2048 - 1048
    table = cli.run("usage", "import", str(records))
    assert "usage_line_malformed" in table.stdout and "0 records applied" in table.stdout


def test_a_clean_usage_file_exits_zero_and_an_exhausted_card_says_so(
    database_url: str, tmp_path: Path
) -> None:
    cli = Cli(database_url, tmp_path)
    cli.json("init", "--demo")
    records = tmp_path / "cdr.csv"
    records.write_text(
        "record_id,card,used_at,data_used_mb\nx1,+60123456789,2026-01-02T03:04:05Z,99999\n"
    )
    summary = cli.json("usage", "import", str(records))
    assert (summary["applied"], summary["events"], summary["bad_lines"]) == (1, 1, 0)
    balance = cli.json("balance", "+60123456789")
    assert balance["data_quota_mb"] == 0 and balance["data_exhausted"] is True
    assert "no data left" in cli.run("balance", "+60123456789").stdout
    history = cli.json("history", "+60123456789")
    kinds = [event["kind"] for event in history["card_events"]]
    assert "data_exhausted" in kinds


def test_an_unreadable_file_is_one_error_line(database_url: str, tmp_path: Path) -> None:
    cli = Cli(database_url, tmp_path)
    completed = cli.run("usage", "import", str(tmp_path / "missing.csv"))
    assert completed.returncode == 2
    assert completed.stderr.startswith("error [usage_file_unreadable]")


def test_usage_on_a_postpaid_or_expired_card_is_said_to_debit_nothing(
    database_url: str, tmp_path: Path
) -> None:
    cli = Cli(database_url, tmp_path)
    cli.json("init", "--demo")
    records = tmp_path / "cdr.csv"
    records.write_text(
        "record_id,card,used_at,data_used_mb\n"
        "p1,+60198765432,2026-01-02T03:04:05Z,500\n"
        "e1,+60123450002,2026-01-02T03:04:05Z,300\n"
    )
    completed = cli.run("usage", "import", str(records))
    assert completed.returncode == 0, completed.stderr
    said = " ".join(completed.stdout.split())
    assert (
        "0 MB debited from 0 cards, 0 threshold events; "
        "kept, not debited: 1 of postpaid cards, 1 of expired cards" in said
    ), said
    kinds = [event["kind"] for event in cli.json("history", "+60198765432")["card_events"]]
    assert "data_exhausted" not in kinds and "data_low" not in kinds
