"""Settings checks that span fields: the lease extension period against the lease length."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from support import make_settings


def test_leases_are_extended_every_second_by_default() -> None:
    assert make_settings(lease_seconds=30).lease_extend_seconds == 1.0


def test_a_short_lease_is_extended_three_times_per_lease_by_default() -> None:
    assert make_settings(lease_seconds=2).lease_extend_seconds == pytest.approx(2 / 3)


def test_a_period_set_is_used() -> None:
    settings = make_settings(lease_seconds=30, lease_extend_every=5)
    assert settings.lease_extend_every == settings.lease_extend_seconds == 5


def test_a_period_over_a_third_of_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match="at most a third of lease_seconds"):
        make_settings(lease_seconds=30, lease_extend_every=10.5)
    with pytest.raises(ValidationError):
        make_settings(lease_extend_every=0)
