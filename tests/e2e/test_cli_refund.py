"""`topup refund` as staff run it: possible until the activation is sent, and the renewal's
timeline (`topup status`) then says that staff refunded it and why."""

from __future__ import annotations

import pytest

from tests.e2e.test_cli import CARD, EXIT_FAILED, Cli, assert_one_error_line, pay

pytest_plugins = ["tests.e2e.test_cli"]
SLOW_NETWORK_S = "3600"  # the network takes an hour: the worker sends, the network is not done
STAFF_REASON = "customer asked at the store"


# What the databases decide (a claim against a refund) is tested on both in
# tests/integration/test_staff_refund.py; here the commands, on one.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_staff_refund_until_the_activation_is_sent_and_its_timeline_says_why(
    demo_cli: Cli,
) -> None:
    refunded = demo_cli.json("renew", CARD, "reload_10", *pay())
    sent = demo_cli.json("renew", CARD, "reload_10", *pay())
    assert demo_cli.json("refund", refunded["id"], "--reason", STAFF_REASON)["refund"] == "queued"
    demo_cli.environment["TOPUP_NETWORK_DELAY_S"] = SLOW_NETWORK_S
    worked = demo_cli.run("worker", "--once")
    assert worked.returncode == 0, worked.stderr

    too_late = demo_cli.run("refund", sent["id"], "--reason", STAFF_REASON)
    assert_one_error_line(too_late, "activation_already_sent")
    assert too_late.returncode == EXIT_FAILED

    status = demo_cli.run("status", refunded["id"])
    assert status.returncode == 0, status.stderr
    printed = " ".join(status.stdout.split())  # as wide as the terminal: lines may wrap
    expected = (
        f"activating -> refunded: refunded at staff request before activation: {STAFF_REASON}"
    )
    assert expected in printed
