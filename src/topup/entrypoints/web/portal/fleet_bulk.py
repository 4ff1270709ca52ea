"""Bulk renewal in the portal: a CSV upload (multipart, at most ``bulk_upload_bytes_max``) or
pasted lines -> the dry run (each line with its message in the visitor's language, the total)
-> "Start" (a POST with CSRF and the start key the dry run's form carries, so a double click or
a second tab starts one run) -> the run's page with live progress (Server-Sent Events; without
JavaScript it reloads itself while the run goes on, and has a refresh link) -> the result file
(CSV, line by line) -> "Retry the failed lines" (those only, once per run).

A viewer sees the runs and their results but no start or retry buttons, and the services
refuse it anyway (``fleet_role_forbidden``)."""

from __future__ import annotations

import re
import secrets

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from topup.domain.errors import InputError, TopupError
from topup.domain.fleets import BulkLine
from topup.domain.money import Money
from topup.entrypoints.spreadsheets import bulk_result_csv
from topup.entrypoints.web.portal.account_common import (
    NO_STORE,
    AccountId,
    locale_of,
    services_of,
    status_for,
    text_field,
)
from topup.entrypoints.web.portal.fleet_common import (
    ID_LENGTH_MAX,
    ORGANISATIONS_PATH,
    code_text,
    fleet_path,
    render,
)
from topup.entrypoints.web.portal.fleet_events import ProgressStream, version_hash
from topup.entrypoints.web.portal.status_events import stream_response
from topup.entrypoints.web.shared.forms import NO_ERRORS, form_errors
from topup.services.context import Services
from topup.services.fleets import bulk, organisations
from topup.services.fleets.bulk import START_KEY_LENGTH_MAX, DryRun, RunProgress

router = APIRouter()

BULK_PATH = ORGANISATIONS_PATH + "/{organisation_id}/bulk-renewals"
# The paths whose bodies may be as large as an upload (``topup.entrypoints.site``).
UPLOAD_PATHS = re.compile(r"^/organisations/[^/]{1,64}/bulk-renewals/(check|start)$")
UPLOAD_FORM_OVERHEAD_BYTES = 64 * 1024  # a form's other fields and multipart boundaries
NO_JAVASCRIPT_RELOAD_S = 5  # a running run's page reloads itself this often without a script
LINES_SHOWN_MAX = 2000  # a dry run's lines listed in the page (the total counts them all)
TOTAL_LENGTH_MAX = 18  # the Start form's total, in minor units
FIELDS = {"lines": "lines", "file": "file", "payment_card": "lines", "run": "lines"}


def upload_bytes_max(services: Services) -> int:
    return services.limits.fleets.bulk_upload_bytes_max


def body_bytes_max(services: Services) -> int:
    """What the upload paths' bodies may weigh (checked at the door, before CSRF reads them)."""
    return upload_bytes_max(services) + UPLOAD_FORM_OVERHEAD_BYTES


def _too_large(services: Services) -> InputError:
    return InputError(
        "the upload is larger than a bulk renewal takes",
        code="bulk_upload_too_large",
        field="file",
        params={"kilobytes_max": str(upload_bytes_max(services) // 1024)},
    )


async def _uploaded_text(services: Services, form: FormData) -> str:
    """The file's text if one was chosen, else the pasted lines; bounded, UTF-8."""
    limit = upload_bytes_max(services)
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise _too_large(services)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(
                "the file is not UTF-8 text",
                code="fleet_file_unreadable",
                field="file",
                params={"file": upload.filename[:80]},
            ) from None
    pasted = form.get("lines")
    text = pasted if isinstance(pasted, str) else ""
    if len(text.encode()) > limit:
        raise _too_large(services)
    return text


async def _runs_page(
    request: Request,
    account_id: str,
    organisation_id: str,
    *,
    error: TopupError | None = None,
    lines: str = "",
) -> Response:
    services = services_of(request)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    runs = await bulk.recent_runs(services, account_id, organisation_id)
    errors = NO_ERRORS if error is None else form_errors(error, locale_of(request), fields=FIELDS)
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "may_manage": member.role.may_manage,
        "runs": runs,
        "errors": errors,
        "lines": lines,
        "kilobytes_max": upload_bytes_max(services) // 1024,
        "lines_max": services.limits.fleets.bulk_lines_max,
        "current": "bulk",
    }
    return render(request, "bulk.html", context, 200 if error is None else status_for(error))


@router.get(BULK_PATH)
async def runs(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    return await _runs_page(request, account_id, organisation_id[:ID_LENGTH_MAX])


def _problem_text(line: bulk.CheckedLine, locale: str) -> str:
    if line.problem is None:
        return ""
    return code_text(line.problem, line.problem_params, locale, plan=line.plan_code)


def _renew_again(form: FormData) -> bool:
    """The dry run's "Renew these again": cards a recent bulk renewal has are checked too."""
    return text_field(form, "renew_again", 8) in ("1", "on", "true")


@router.post(BULK_PATH + "/check")
async def check(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    """The dry run: every line checked, the total; nothing is written."""
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    services = services_of(request)
    form = await request.form()
    renew_again = _renew_again(form)
    try:
        text = await _uploaded_text(services, form)
        checked = await bulk.dry_run(
            services, account_id, organisation_id, text, renew_again=renew_again
        )
    except TopupError as error:
        await form.close()
        if error.code == "organisation_unknown":
            raise
        pasted = text_field(form, "lines", upload_bytes_max(services))
        return await _runs_page(request, account_id, organisation_id, error=error, lines=pasted)
    await form.close()  # the upload's spooled file
    return await _dry_run_page(request, account_id, organisation_id, checked, text)


async def _dry_run_page(
    request: Request,
    account_id: str,
    organisation_id: str,
    checked: DryRun,
    text: str,
    *,
    error: TopupError | None = None,
) -> Response:
    services = services_of(request)
    locale = locale_of(request)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    errors = NO_ERRORS if error is None else form_errors(error, locale, fields=FIELDS)
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "may_manage": member.role.may_manage,
        "checked": checked,
        "shown": checked.lines[:LINES_SHOWN_MAX],
        "problem_text": lambda line: _problem_text(line, locale),
        "text": text,
        # Issued with the form: "Start" pressed twice (or in two tabs) starts one run.
        "start_key": secrets.token_urlsafe(24),
        "errors": errors,
        "current": "bulk",
    }
    return render(request, "dry_run.html", context, 200 if error is None else status_for(error))


def _shown_total(services: Services, shown: str) -> Money | None:
    """The total the dry run's Start form carried (minor units); None if it carried none."""
    if not (shown.isascii() and shown.isdigit()):
        return None
    return Money(int(shown), services.profile.currency)


@router.post(BULK_PATH + "/start")
async def start(request: Request, account_id: AccountId, organisation_id: str) -> Response:
    organisation_id = organisation_id[:ID_LENGTH_MAX]
    services = services_of(request)
    form = await request.form()
    text = text_field(form, "lines", upload_bytes_max(services) + 1)
    start_key = text_field(form, "start_key", START_KEY_LENGTH_MAX)
    renew_again = _renew_again(form)
    shown = text_field(form, "total", TOTAL_LENGTH_MAX)
    await form.close()
    try:
        if len(text.encode()) > upload_bytes_max(services):
            raise _too_large(services)
        run = await bulk.start_run(
            services,
            account_id,
            organisation_id,
            text,
            start_key=start_key or None,
            renew_again=renew_again,
            shown_total=_shown_total(services, shown),
            require_shown_total=True,
        )
    except TopupError as error:
        if error.code == "organisation_unknown":
            raise
        try:
            checked = await bulk.dry_run(
                services, account_id, organisation_id, text, renew_again=renew_again
            )
        except TopupError:
            return await _runs_page(request, account_id, organisation_id, error=error)
        return await _dry_run_page(request, account_id, organisation_id, checked, text, error=error)
    return RedirectResponse(fleet_path(organisation_id, f"/bulk-renewals/{run.id}"), 303)


# --- a run: progress, live events, result, retry ----------------------------------------------


def _run_path(organisation_id: str, run_id: str, tail: str = "") -> str:
    return fleet_path(organisation_id, f"/bulk-renewals/{run_id}{tail}")


@router.get(BULK_PATH + "/{run_id}")
async def run_page(
    request: Request, account_id: AccountId, organisation_id: str, run_id: str
) -> Response:
    services = services_of(request)
    organisation_id, run_id = organisation_id[:ID_LENGTH_MAX], run_id[:ID_LENGTH_MAX]
    progress = await bulk.run_progress(services, account_id, organisation_id, run_id)
    organisation, member = await organisations.my_membership(services, account_id, organisation_id)
    not_renewed = progress.count("failed") + progress.count("rejected")
    locale = locale_of(request)
    problems: list[tuple[BulkLine, str]] = []
    if progress.finished and not_renewed:
        lines = await bulk.result_lines(services, account_id, organisation_id, run_id)
        problems = [
            (line, line_text(line, locale))
            for line in lines
            if line.status.value in ("failed", "rejected")
        ][:LINES_SHOWN_MAX]
    context = {
        "organisation": organisation,
        "role": member.role.value,
        "may_manage": member.role.may_manage,
        "progress": progress,
        "version": _version(progress),
        "problems": problems,
        "reload_s": NO_JAVASCRIPT_RELOAD_S,
        "events_path": _run_path(organisation_id, run_id, "/events"),
        "current": "bulk",
    }
    return render(request, "run.html", context)


def line_text(line: BulkLine, locale: str) -> str:
    """Why a line ends as it does, as a sentence in ``locale`` ("" when it has no error)."""
    if not line.error_code:
        return ""
    return code_text(
        line.error_code, line.error_params, locale, plan=line.plan_code, number=line.number
    )


def _version(progress: RunProgress) -> str:
    return version_hash(progress.version())


@router.get(BULK_PATH + "/{run_id}/events")
async def run_events(
    request: Request, account_id: AccountId, organisation_id: str, run_id: str, since: str = ""
) -> Response:
    organisation_id, run_id = organisation_id[:ID_LENGTH_MAX], run_id[:ID_LENGTH_MAX]
    # Not a member, or not its run: not found before any stream starts.
    await bulk.run_progress(services_of(request), account_id, organisation_id, run_id)
    services = services_of(request)

    async def look() -> tuple[str, bool]:
        progress = await bulk.run_progress(services, account_id, organisation_id, run_id)
        return progress.version(), progress.finished

    return stream_response(ProgressStream(request, look, since=since[:12]))


@router.get(BULK_PATH + "/{run_id}/result.csv")
async def result_csv(
    request: Request, account_id: AccountId, organisation_id: str, run_id: str
) -> Response:
    """One row per line: line, number, plan, outcome, renewal id, receipt, error code (as the
    command line's result file), and the error's message in the organisation's language (the
    file is passed around the organisation, as its invoices are)."""
    organisation_id, run_id = organisation_id[:ID_LENGTH_MAX], run_id[:ID_LENGTH_MAX]
    services = services_of(request)
    lines = await bulk.result_lines(services, account_id, organisation_id, run_id)
    organisation, _ = await organisations.my_membership(services, account_id, organisation_id)
    locale = organisation.language
    text = bulk_result_csv(lines, lambda line: line_text(line, locale))
    return Response(
        "\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={
            **NO_STORE,
            "content-disposition": f'attachment; filename="bulk-renewal-{run_id[:8]}.csv"',
            "x-content-type-options": "nosniff",
        },
    )


@router.post(BULK_PATH + "/{run_id}/retry")
async def retry(
    request: Request, account_id: AccountId, organisation_id: str, run_id: str
) -> Response:
    """A new run of the failed lines only; pressed twice, the same new run."""
    organisation_id, run_id = organisation_id[:ID_LENGTH_MAX], run_id[:ID_LENGTH_MAX]
    made = await bulk.retry_failed(services_of(request), account_id, organisation_id, run_id)
    return RedirectResponse(_run_path(organisation_id, made.id), status_code=303)
