"""Units of the app spec: durations, memory, cpu, scale and rollout limits."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.spec import format_duration, parse_cpu, parse_duration, parse_memory, parse_scale, rollout_limits


@pytest.mark.parametrize(
    "text, seconds",
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), ("0s", 0.0), (10, 10.0), (0, 0.0)],
    ids=["ms", "s", "m", "h", "decimal", "zero", "int", "int-zero"],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30", "5 m", "1d", "-1s", "", -1, True, None, "1h30m"],
                         ids=["no-unit", "space", "days", "negative-string", "empty", "negative", "bool", "none", "compound"])
def test_parse_duration_refuses(value):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_reads_back_exactly(millis):
    text = format_duration(millis / 1000)
    assert round(parse_duration(text) * 1000) == millis


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (0.5, "500ms"), (30, "30s"), (90, "90s"), (120, "2m"), (7200, "2h")],
                         ids=["zero", "ms", "s", "not-whole-minutes", "m", "h"])
def test_format_duration_picks_the_largest_whole_unit(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "value, size",
    [(0, 0), (1024, 1024), ("1024", 1024), ("1Ki", 1024), ("256Mi", 256 << 20), ("2Gi", 2 << 30)],
    ids=["zero", "int", "digits", "Ki", "Mi", "Gi"],
)
def test_parse_memory(value, size):
    assert parse_memory(value) == size


@pytest.mark.parametrize("value", ["256M", "1.5Gi", "Mi", -1, 1.5, True], ids=["si", "fraction", "no-number", "negative", "float", "bool"])
def test_parse_memory_refuses(value):
    with pytest.raises(ValueError, match="is not an amount of memory"):
        parse_memory(value)


@pytest.mark.parametrize("value, cores", [(0.5, 0.5), (2, 2.0), ("500m", 0.5), ("1.25", 1.25), ("0", 0.0)],
                         ids=["float", "int", "millicores", "string", "zero"])
def test_parse_cpu(value, cores):
    assert parse_cpu(value) == cores


@pytest.mark.parametrize("value", ["half", "-1", -0.5, "1.5m", True], ids=["word", "negative-string", "negative", "fractional-milli", "bool"])
def test_parse_cpu_refuses(value):
    with pytest.raises(ValueError, match="is not a number of cores"):
        parse_cpu(value)


@pytest.mark.parametrize("value", ["25%", "0%", "100%", 3])
@pytest.mark.parametrize("total", [0, 1, 3, 4, 10])
def test_parse_scale_rounds_surge_up_and_unavailability_down(value, total):
    up, down = parse_scale(value, total, round_up=True), parse_scale(value, total, round_up=False)
    if isinstance(value, int):
        assert up == down == value
    else:
        exact = int(value[:-1]) * total / 100
        assert down <= exact <= up
        assert up - down == (0 if exact == int(exact) else 1)


@pytest.mark.parametrize("value", ["25", "x%", -1, "-5%", True], ids=["no-percent", "word", "negative", "negative-percent", "bool"])
def test_parse_scale_refuses(value):
    with pytest.raises(ValueError, match="is not a whole number of instances or a percentage"):
        parse_scale(value, 10, round_up=True)


@pytest.mark.parametrize(
    "update, total, limits",
    [
        ({}, 10, (3, 2)),
        ({}, 1, (1, 0)),
        ({}, 0, (1, 0)),
        ({"maxSurge": 0, "maxUnavailable": 1}, 4, (0, 1)),
        ({"maxSurge": "0%", "maxUnavailable": "10%"}, 5, (1, 0)),
        ({"maxSurge": 2, "maxUnavailable": "50%"}, 5, (2, 2)),
    ],
    ids=["defaults-10", "defaults-1", "defaults-0", "unavailable-only", "both-round-to-zero", "mixed"],
)
def test_rollout_limits(update, total, limits):
    assert rollout_limits(update, total) == limits


@given(st.integers(0, 1000), st.integers(0, 200), st.integers(0, 200))
def test_rollout_can_always_move(total, surge_pct, unavailable_pct):
    surge, unavailable = rollout_limits({"maxSurge": f"{surge_pct}%", "maxUnavailable": f"{unavailable_pct}%"}, total)
    assert surge + unavailable >= 1


@pytest.mark.parametrize("n, exact, text", [
    (512 << 20, True, "512Mi"), (3 << 30, True, "3Gi"), (1536 << 20, True, "1536Mi"), (1000, True, "1000 bytes"),
    (4 << 10, True, "4Ki"), (1536 << 20, False, "1.5Gi"), (300 << 20, False, "300.0Mi"), (1000, False, "1000"),
    (None, False, "0"),
], ids=["Mi", "Gi", "not-whole-Gi", "bytes", "Ki", "table-Gi", "table-Mi", "table-bytes", "table-none"])
def test_memory_is_said_in_the_units_a_spec_writes(n, exact, text):
    from corral.spec.quantities import format_memory
    assert format_memory(n, exact=exact) == text


@given(st.integers(min_value=0, max_value=1 << 40))
def test_an_exact_memory_reads_back_as_the_same_bytes(n):
    from corral.spec.quantities import format_memory
    text = format_memory(n, exact=True)
    assert parse_memory(text.removesuffix(" bytes")) == n
