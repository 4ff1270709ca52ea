"""The auto-renewal schedule from the limits."""

from __future__ import annotations

from topup.domain.auto_renewal import Schedule
from topup.services.context import Services


def schedule_of(services: Services) -> Schedule:
    limits = services.limits.auto_renewal
    offsets = sorted(
        {limits.auto_renewal_precheck_early_s, limits.auto_renewal_precheck_late_s}, reverse=True
    )
    return Schedule(
        lead_s=limits.auto_renewal_lead_s,
        precheck_offsets_s=tuple(offsets),
        tries_max=limits.auto_renewal_tries_max,
        retry_base_s=limits.auto_renewal_retry_base_s,
        retry_cap_s=limits.auto_renewal_retry_cap_s,
    )
