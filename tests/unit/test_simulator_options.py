from __future__ import annotations

import pytest

from proxy.simulator.options import parse_options


def test_delays_in_milliseconds_allow_long_thinking_models() -> None:
    options = parse_options("first_token_delay_ms=90000; token_delay_ms=5")
    assert options.first_token_delay == 90.0 and options.token_delay == 0.005


@pytest.mark.parametrize("value", ["-1", "3600001", "nan", "soon"])
def test_out_of_range_delays_are_refused(value: str) -> None:
    with pytest.raises(Exception, match="first_token_delay_ms"):
        parse_options(f"first_token_delay_ms={value}")


def test_stamp_is_a_flag_and_off_by_default() -> None:
    assert parse_options("stamp=1").stamp is True
    assert parse_options("tokens=3").stamp is False
    with pytest.raises(Exception, match="stamp"):
        parse_options("stamp=now")
