"""Spec §11: local start/end converted to instants once, DST-safe."""

from datetime import UTC, datetime

import pytest

from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.timezones import local_to_instant


def test_local_start_in_a_time_zone_converts_to_its_utc_instant() -> None:
    assert local_to_instant("start_local", datetime(2026, 7, 1, 9, 0), "Europe/Berlin") == datetime(
        2026, 7, 1, 7, 0, tzinfo=UTC
    )


def test_start_on_the_night_clocks_spring_forward_just_after_the_gap() -> None:
    # Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST.
    assert local_to_instant(
        "start_local", datetime(2026, 3, 29, 3, 30), "Europe/Berlin"
    ) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert local_to_instant(
        "start_local", datetime(2026, 3, 29, 1, 30), "Europe/Berlin"
    ) == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def test_local_time_inside_the_spring_forward_gap_is_refused() -> None:
    with pytest.raises(Refusal) as refused:
        local_to_instant("start_local", datetime(2026, 3, 29, 2, 30), "Europe/Berlin")
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    assert "does not exist" in refused.value.message


def test_ambiguous_local_time_when_clocks_fall_back_means_the_first_occurrence() -> None:
    # Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    assert local_to_instant(
        "start_local", datetime(2026, 10, 25, 2, 30), "Europe/Berlin"
    ) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_us_zone_dst_and_unknown_zone() -> None:
    # New York, 8 March 2026: 02:00 EST becomes 03:00 EDT.
    assert local_to_instant(
        "end_local", datetime(2026, 3, 8, 3, 0), "America/New_York"
    ) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    with pytest.raises(Refusal):
        local_to_instant("end_local", datetime(2026, 3, 8, 3, 0), "Mars/Olympus")
