"""Go-style duration parsing and formatting (meshd/durations.py)."""

from __future__ import annotations

import pytest

from meshd.durations import format_duration, parse_duration, parse_duration_ns
from meshd.errors import DurationError, MeshdError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("72h", 259200.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),  # MICRO SIGN
        ("250\u03bcs", 0.00025),  # GREEK SMALL LETTER MU
        ("100ns", 1e-7),
        ("1h1m1s1ms", 3661.001),
        ("+3s", 3.0),
        ("87600h", 315360000.0),
    ],
)
def test_parse_duration_accepts_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty duration"),
        ("-1s", "negative durations are not allowed"),
        ("-0", "negative durations are not allowed"),
        ("10", "missing unit"),
        ("00", "missing unit"),
        ("1.5", "missing unit"),
        ("10x", 'unknown unit "x"'),
        ("10 s", 'unknown unit " s"'),
        ("10S", 'unknown unit "S"'),
        (" 10s", "expected a number"),
        ("s", "expected a number"),
        (".s", "expected a number"),
        ("1s.", "expected a number"),
        ("3000000h", "too large"),
        ("\u0661s", "expected a number"),  # ARABIC-INDIC DIGIT ONE is not a Go digit
    ],
)
def test_parse_duration_rejects_invalid_text(text: str, reason: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert reason in info.value.reason
    assert str(info.value).startswith(f'invalid duration "{text}": ')


def test_duration_error_is_a_value_error_and_a_meshd_error() -> None:
    with pytest.raises(ValueError):
        parse_duration("nope")
    assert issubclass(DurationError, MeshdError)


def test_parse_duration_ns_is_exact() -> None:
    assert parse_duration_ns("1.000000001s") == 1_000_000_001
    assert parse_duration_ns("2562047h") == 2562047 * 3600 * 10**9


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (1e-7, "100ns"),
        (1.5e-6, "1.5\u00b5s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (10.0, "10s"),
        (90.0, "1m30s"),
        (3600.0, "1h0m0s"),
        (259200.0, "72h0m0s"),
        (-2.0, "-2s"),
    ],
)
def test_format_duration_matches_go_string(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["0s", "10s", "1m30s", "500ms", "72h0m0s", "1h0m0.25s"])
def test_format_then_parse_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize("number", ["0", "7", "0010", "60", "500", "2562047"])
@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s", "m", "h"])
def test_whole_numbers_take_the_fast_path_to_the_same_value(number: str, unit: str) -> None:
    """'60s' is parsed without Fractions; '60.0s' by the general parser."""
    try:
        general = parse_duration_ns(f"{number}.0{unit}")
    except DurationError:
        with pytest.raises(DurationError, match="too large"):
            parse_duration_ns(f"{number}{unit}")
        return
    assert parse_duration_ns(f"{number}{unit}") == general
