"""`topup methods`, `confirm`, `refund` and `reconcile` as a store clerk or operator runs them."""

from __future__ import annotations

from tests.e2e.test_cli import CARD, EXIT_FAILED, EXIT_INPUT, Cli, assert_one_error_line, pay

pytest_plugins = ["tests.e2e.test_cli"]
NEEDS_PASSWORD = "4000000000003220"


def test_methods_lists_what_a_kiosk_in_its_region_offers(demo_cli: Cli) -> None:
    penang = demo_cli.json(
        "methods", CARD, "pack_5gb_7d", "--channel", "kiosk", "--region", "penang"
    )
    sabah = demo_cli.json("methods", CARD, "pack_5gb_7d", "--channel", "kiosk", "--region", "sabah")
    assert "ewallet:grabpay" in [method["code"] for method in penang["methods"]]
    assert "ewallet:grabpay" not in [method["code"] for method in sabah["methods"]]
    assert penang["amount_minor"] == 1000


def test_a_switched_off_method_is_refused_with_its_code(demo_cli: Cli) -> None:
    completed = demo_cli.run("renew", CARD, "pack_5gb_7d", *pay(), "--method", "wechat_pay")
    assert_one_error_line(completed, "method_disabled")
    assert completed.returncode == EXIT_FAILED


def test_confirm_takes_the_payment_password_and_a_wrong_one_says_so(demo_cli: Cli) -> None:
    waiting = demo_cli.json("renew", CARD, "pack_5gb_7d", *pay(number=NEEDS_PASSWORD))
    assert waiting["status"] == "requires_action"
    wrong = demo_cli.run("confirm", waiting["id"], "--answer", "111111")
    assert_one_error_line(wrong, "payment_password_wrong")
    assert wrong.returncode == EXIT_INPUT
    paid = demo_cli.json("confirm", waiting["id"], "--answer", "123456")
    assert paid["status"] == "activating"


def test_a_card_declined_after_authentication_asks_for_the_password_then_is_declined(
    demo_cli: Cli,
) -> None:
    waiting = demo_cli.json("renew", CARD, "pack_5gb_7d", *pay(number="4000008260003178"))
    assert waiting["status"] == "requires_action"
    declined = demo_cli.run("confirm", waiting["id"], "--answer", "123456")
    assert_one_error_line(declined, "insufficient_funds")
    assert demo_cli.json("status", waiting["id"])["status"] == "declined"


def test_a_card_that_always_requires_authentication_asks_for_the_password(demo_cli: Cli) -> None:
    waiting = demo_cli.json("renew", CARD, "pack_5gb_7d", *pay(number="4000002760003184"))
    assert waiting["status"] == "requires_action"
    paid = demo_cli.json("confirm", waiting["id"], "--answer", "123456")
    assert paid["status"] == "activating"


def test_refund_then_the_worker_returns_the_money(demo_cli: Cli) -> None:
    renewal = demo_cli.json("renew", CARD, "reload_10", *pay())
    assert demo_cli.json("refund", renewal["id"], "--reason", "line cut")["refund"] == "queued"
    assert demo_cli.json("reconcile")["checked"] == 0
    completed = demo_cli.run("worker", "--once")
    assert completed.returncode == 0, completed.stderr
    assert demo_cli.json("status", renewal["id"])["status"] == "refunded"
    assert demo_cli.json("audit")["clean"] is True
