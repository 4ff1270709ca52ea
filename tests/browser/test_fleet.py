"""A fleet in a real browser: the operator creates an organisation (the command line) with a
signed-up admin and the demo cards; the admin saves a payment card, chooses it for the
organisation, uploads a CSV, sees the dry run (each line's message, the total), starts it,
watches the progress move (Server-Sent Events, no reload: the organisation pays with the
sandbox's card whose charges time out, so no line can finish before the gateway is asked again,
about 5 s later, and the run's page is open while it goes on) and downloads the result file. A
viewer then sees the same run in Chinese on a phone, without the start or retry buttons. An
owner adds cards by the code the sandbox SMS sent to each (a mistyped code first), in English on
a desktop and in Chinese on a phone, and takes one out after the confirmation. Every page is
checked by axe and photographed at phone and desktop sizes."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from tests.browser.conftest import LiveSite
from tests.browser.test_account import CODE, _email, _sign_in, _sign_up_and_confirm

# Demo cards of the "my" profile: two active, one in grace, one expired (refused by the dry run).
FLEET = ["+60123456789", "+60123400000", "+60123450001", "+60123450002"]
# The network refuses the demo's "0000" card (its paid renewal is refunded once activation
# fails, in a second or so): the upload leaves it out, so every outcome below is certain.
UPLOADED = [number for number in FLEET if not number.endswith("0000")]
PLAN = "pack_5gb_7d"
ORGANISATION_ID = re.compile(r"organisation (\S+) \(")
RUN_TIMEOUT_MS = 60_000
# The sandbox's card whose charges time out with the money taken: the payment's outcome is known
# once the gateway is asked again (after 5 s), so each line waits and is looked at again.
SLOW_PAYMENT_CARD = "4000 0099 9000 0203"


def _save_a_slow_payment_card(page: Any) -> None:
    page.goto("/accounts/payment-cards")
    page.locator("#number").fill(SLOW_PAYMENT_CARD)
    page.locator("#expiry").fill("12/30")
    page.locator("#cvc").fill("123")
    page.locator("form[data-tokenise] button[type=submit]").click()
    page.wait_for_url("**/accounts/payment-cards?notice=saved")


def _organisation(live_site: LiveSite, owner: str, tmp_path: Path) -> str:
    made = live_site.cli(
        "organisations", "create", "Acme Sdn Bhd", "--owner", owner, "--language", "en"
    )
    assert made.returncode == 0, made.stdout + made.stderr
    found = ORGANISATION_ID.search(made.stdout)
    assert found is not None, made.stdout
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(FLEET) + "\n")
    added = live_site.cli("organisations", "add-cards", found.group(1), str(numbers))
    assert added.returncode == 0, added.stdout + added.stderr
    return found.group(1)


def test_a_fleet_admin_uploads_a_csv_watches_the_progress_and_downloads_the_result(
    new_page: Any,
    live_site: LiveSite,
    screenshots: Any,
    axe_check: Any,
    tmp_path: Path,
) -> None:
    admin = new_page(locale="en-GB")
    email = _email()
    _sign_up_and_confirm(admin, live_site, email)
    _sign_in(admin, email)
    organisation = _organisation(live_site, email, tmp_path)
    _save_a_slow_payment_card(admin)

    # The account's page links the fleet; the fleet shows the cards by status.
    admin.goto("/accounts/cards")
    admin.locator(f"a[href='/organisations/{organisation}/fleet']").click()
    admin.wait_for_url(f"**/organisations/{organisation}/fleet")
    assert "Acme Sdn Bhd" in admin.locator("h1").inner_text()
    assert admin.locator(".fleet-table tbody tr").count() == len(FLEET)
    axe_check(admin)
    screenshots(admin, "fleet")

    # The organisation's payment card: one of the admin's saved ones.
    admin.goto(f"/organisations/{organisation}/auto-renewal")
    admin.locator("form[action$='/auto-renewal/payment-card'] button[type=submit]").click()
    admin.wait_for_url("**/auto-renewal?notice=payment_card")
    axe_check(admin)
    screenshots(admin, "policy")

    # Upload a CSV: the dry run checks each line.
    upload = tmp_path / "renew.csv"
    upload.write_text("number,plan\n" + "".join(f"{number},{PLAN}\n" for number in UPLOADED))
    admin.goto(f"/organisations/{organisation}/bulk-renewals")
    axe_check(admin)
    screenshots(admin, "bulk-upload")
    admin.locator("#file").set_input_files(str(upload))
    admin.locator("form[action$='/bulk-renewals/check'] button[type=submit]").click()
    admin.wait_for_url("**/bulk-renewals/check")
    main = admin.locator("main").inner_text()
    assert "Check of the lines" in main
    assert "2\nto renew" in main or "2 to renew" in main
    assert "RM" in main or "MYR" in main
    assert admin.locator(".fleet-row--problem").count() == 1  # the expired card
    axe_check(admin)
    screenshots(admin, "bulk-dry-run")

    # Start: the run's page follows the progress without reloading.
    admin.locator("form[action$='/bulk-renewals/start'] button[type=submit]").click()
    admin.wait_for_url(re.compile(r".*/bulk-renewals/[0-9a-f-]{36}$"))
    run_url = admin.url
    admin.evaluate("window.notReloaded = true")
    # No line can be done yet (its payment's outcome comes in about 5 s): the page is live.
    assert admin.locator("[data-live]").count() == 1
    assert "Running" in admin.locator(".fleet-run-state").inner_text()
    assert admin.locator("progress.fleet-progress").get_attribute("value") == "0"
    screenshots(admin, "bulk-run-running")
    admin.locator("text=Download the result (CSV)").wait_for(timeout=RUN_TIMEOUT_MS)
    # The live block changed in place: the same document, now finished, never reloaded.
    assert admin.evaluate("window.notReloaded === true")
    assert admin.locator("progress.fleet-progress").get_attribute("value") == "2"
    main = admin.locator("main").inner_text()
    assert "Finished" in main
    axe_check(admin)
    screenshots(admin, "bulk-run-finished")

    with admin.expect_download() as downloading:
        admin.locator("text=Download the result (CSV)").click()
    result = Path(downloading.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(result)))
    assert [row["outcome"] for row in rows] == ["succeeded"] * 2 + ["rejected"]
    assert all(row["renewal_id"] for row in rows[:2])
    assert rows[2]["error_code"] == "card_expired"
    assert rows[2]["message"].startswith("This data card has expired")  # why, in words

    # The same file again: its cards were renewed recently and are left out, unless the admin
    # asks to renew them again (a new check, with its own total and Start).
    admin.goto(f"/organisations/{organisation}/bulk-renewals")
    admin.locator("#file").set_input_files(str(upload))
    admin.locator("form[action$='/bulk-renewals/check'] button[type=submit]").click()
    admin.wait_for_url("**/bulk-renewals/check")
    main = admin.locator("main").inner_text()
    assert "renewed recently, left out" in main and "already renewed by a bulk renewal" in main
    assert admin.locator("form[action$='/bulk-renewals/start']").count() == 0
    axe_check(admin)
    screenshots(admin, "bulk-dry-run-renewed-recently")
    admin.locator("input[name=renew_again]").check()
    admin.locator("form.fleet-renew-again button[type=submit]").click()
    admin.wait_for_url("**/bulk-renewals/check")
    assert "as you asked" in admin.locator("main").inner_text()
    assert admin.locator("form[action$='/bulk-renewals/start']").count() == 1
    screenshots(admin, "bulk-dry-run-renew-again")

    # A viewer, in Chinese on a phone: the same run, no start or retry buttons.
    viewer_email = _email()
    viewer = new_page(locale="zh-CN", phone=True)
    _sign_up_and_confirm(viewer, live_site, viewer_email)
    _sign_in(viewer, viewer_email)
    added = live_site.cli(
        "organisations", "add-member", organisation, viewer_email, "--role", "viewer"
    )
    assert added.returncode == 0, added.stdout + added.stderr
    viewer.goto(f"/organisations/{organisation}/fleet")
    assert "Acme Sdn Bhd 的上网卡" in viewer.locator("h1").inner_text()
    axe_check(viewer)
    screenshots(viewer, "fleet-zh")
    viewer.goto(run_url)
    assert "已完成" in viewer.locator("main").inner_text()
    assert viewer.locator("form[action$='/retry']").count() == 0
    screenshots(viewer, "bulk-run-zh")
    viewer.goto(f"/organisations/{organisation}/bulk-renewals")
    viewer.locator("#file").set_input_files(str(upload))
    viewer.locator("form[action$='/bulk-renewals/check'] button[type=submit]").click()
    viewer.wait_for_url("**/bulk-renewals/check")
    assert viewer.locator("form[action$='/bulk-renewals/start']").count() == 0
    # The lines are checked in Chinese: renewed recently by the run above, left out (a viewer
    # is not offered to renew them again).
    shown = viewer.locator("main").inner_text()
    assert "最近已续费，不包含在内" in shown and "已在" in shown
    assert viewer.locator("input[name=renew_again]").count() == 0
    axe_check(viewer)
    screenshots(viewer, "bulk-dry-run-zh")

    # The same viewer switches to Malay: the fleet and the run read in it.
    viewer.goto(f"/organisations/{organisation}/fleet")
    viewer.get_by_role("link", name="Bahasa Melayu").click()
    viewer.wait_for_url(f"**/organisations/{organisation}/fleet")
    assert "Armada Acme Sdn Bhd" in viewer.locator("h1").inner_text()
    axe_check(viewer)
    screenshots(viewer, "fleet-ms")
    viewer.goto(run_url)
    screenshots(viewer, "bulk-run-ms")


# Demo cards of no organisation (postpaid company lines): added by SMS code below.
ADDED_BY_CODE = [("+60198765432", "019-876 5432"), ("+60198760001", "019-876 0001")]
UNKNOWN_NUMBER = "019-999 9999"


def _code_sent_to(live_site: LiveSite, msisdn: str, before: int) -> str:
    """The code of the newest text to ``msisdn``, one sent after the first ``before`` of them."""
    sent = [sms for sms in live_site.sms() if sms.get("msisdn") == msisdn]
    assert len(sent) > before, sent
    code = CODE.search(sent[-1]["text"])
    assert code is not None, sent[-1]["text"]
    return code.group()


def _add_by_code(
    page: Any, live_site: LiveSite, card: tuple[str, str], shots: Any, tag: str
) -> None:
    msisdn, typed = card
    page.locator("#card_number").fill(typed)
    before = len([sms for sms in live_site.sms() if sms.get("msisdn") == msisdn])
    page.locator("form[action$='/cards/add'] button[type=submit]").click()
    page.locator("#code").wait_for()
    shots(page, f"add-card-code{tag}")
    code = _code_sent_to(live_site, msisdn, before)
    page.locator("#code").fill(f"{(int(code) + 1) % 1_000_000:06d}")  # a slip of the finger
    page.locator("form[action$='/cards/add/verify'] button[type=submit]").click()
    page.locator(".error-summary").wait_for()
    assert page.locator("#code").get_attribute("aria-invalid") == "true"
    shots(page, f"add-card-wrong-code{tag}")
    page.locator("#code").fill(code)
    page.locator("form[action$='/cards/add/verify'] button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/fleet\?added=[0-9a-f-]{36}$"))


def test_a_fleet_admin_adds_a_card_by_the_code_sent_to_it_and_removes_one(
    new_page: Any, live_site: LiveSite, screenshots: Any, axe_check: Any
) -> None:
    def shots(page: Any, name: str) -> None:
        screenshots(page, name, large_phone=True)

    admin = new_page(locale="en-GB")
    email = _email()
    _sign_up_and_confirm(admin, live_site, email)
    _sign_in(admin, email)
    made = live_site.cli(
        "organisations", "create", "Maju Logistik Sdn Bhd", "--owner", email, "--language", "en"
    )
    assert made.returncode == 0, made.stdout + made.stderr
    found = ORGANISATION_ID.search(made.stdout)
    assert found is not None, made.stdout
    fleet = f"/organisations/{found.group(1)}/fleet"

    admin.goto(fleet)
    admin.get_by_role("link", name="Add a card").click()
    admin.wait_for_url("**/cards/add")
    axe_check(admin)
    shots(admin, "add-card")
    admin.locator("#card_number").fill(UNKNOWN_NUMBER)
    admin.locator("form[action$='/cards/add'] button[type=submit]").click()
    admin.locator(".error-summary").wait_for()
    assert "No card with this number" in admin.locator(".error-summary").inner_text()
    assert admin.locator("#card_number").input_value() == UNKNOWN_NUMBER  # kept as typed
    axe_check(admin)
    shots(admin, "add-card-unknown-number")

    _add_by_code(admin, live_site, ADDED_BY_CODE[0], shots, "")
    assert "+60 19-876 5432 is in the fleet now." in admin.locator("main").inner_text()
    assert admin.locator(".fleet-table tbody tr").count() == 1
    axe_check(admin)
    shots(admin, "card-added")

    # In Chinese on a phone: the second card, then taking the first out (asked first).
    phone = new_page(locale="zh-CN", phone=True)
    _sign_in(phone, email)
    phone.wait_for_url("**/accounts/cards")
    phone.goto(fleet)
    phone.get_by_role("link", name="添加上网卡").click()
    phone.wait_for_url("**/cards/add")
    assert "将上网卡加入机构" in phone.locator("h1").inner_text()
    axe_check(phone)
    shots(phone, "add-card-zh")
    _add_by_code(phone, live_site, ADDED_BY_CODE[1], shots, "-zh")
    assert "已加入机构名下" in phone.locator("main").inner_text()
    assert phone.locator(".fleet-table tbody tr").count() == 2
    axe_check(phone)
    shots(phone, "card-added-zh")

    phone.get_by_role("link", name="将 +60 19-876 5432 移出机构").click()
    phone.wait_for_url("**/remove")
    assert "移出机构？" in phone.locator("h1").inner_text()
    axe_check(phone)
    shots(phone, "remove-card-zh")
    phone.locator("form[action$='/remove'] button[type=submit]").click()
    phone.wait_for_url("**/fleet?notice=card_removed")
    assert "此卡已移出机构。" in phone.locator("main").inner_text()
    assert phone.locator(".fleet-table tbody tr").count() == 1
    shots(phone, "card-removed-zh")
