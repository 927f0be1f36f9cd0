"""Local date-times to instants, once and DST-safe (spec §11).

A campaign may carry an IANA time zone and give its start and end as local wall-clock times.
They are converted to UTC instants when the message arrives, and only the instants drive the
scheduler. On the night the clocks change:

* a local time that does not exist (it falls in the gap when clocks spring forward) is
  refused, naming the gap, rather than silently moved;
* a local time that exists twice (clocks fall back) means its first occurrence (`fold=0`,
  the earlier instant), the reading a person who books "02:30" on that night expects first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaign_worker.domain.errors import Refusal, RefusalCode


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        raise Refusal(
            RefusalCode.VALIDATION_FAILED, f"timezone {name!r} is not an IANA time zone"
        ) from None


def local_to_instant(field: str, local: datetime, zone_name: str) -> datetime:
    """The UTC instant of a naive local date-time in `zone_name`."""
    if local.tzinfo is not None:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"{field} must be a local date-time without offset, got {local.isoformat()}",
        )
    tz = zone(zone_name)
    first = local.replace(tzinfo=tz, fold=0)
    second = local.replace(tzinfo=tz, fold=1)
    instant = first.astimezone(UTC)
    # A wall time in the spring-forward gap does not round-trip through UTC.
    if instant.astimezone(tz).replace(tzinfo=None) != local:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"{field} {local.isoformat()} does not exist in {zone_name} "
            f"(the clocks skip it: between {first.utcoffset()} and {second.utcoffset()} offsets)",
        )
    return instant
