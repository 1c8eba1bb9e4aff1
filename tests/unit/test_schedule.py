"""slots(): which instants a schedule names, by table (DST gaps and repeats
included) and by properties checked against cronsim's own field matching."""
import datetime
import zoneinfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings, strategies as st

from corral.schedule import ScheduleError, Schedule, next_slot, parse, slots

UTC = datetime.timezone.utc


def z(text):
    """An aware UTC datetime from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def got(schedule, tz, after, until):
    return [t.strftime("%Y-%m-%d %H:%M:%S") for t in slots(schedule, tz, z(after), z(until))]


@pytest.mark.parametrize("schedule, tz, after, until, want", [
    pytest.param("0 7 * * 1-5", "UTC", "2026-03-06 06:00", "2026-03-10 00:00",
                 ["2026-03-06 07:00:00", "2026-03-09 07:00:00"], id="weekdays-skip-the-weekend"),
    pytest.param("0 7 * * 1-5", "Europe/London", "2026-03-27 00:00", "2026-03-31 00:00",
                 ["2026-03-27 07:00:00", "2026-03-30 06:00:00"], id="london-summer-time-moves-the-utc-hour"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-03-28 00:00", "2026-03-31 00:00",
                 ["2026-03-28 01:30:00", "2026-03-29 01:00:00", "2026-03-30 00:30:00"],
                 id="spring-forward-02:30-runs-once-at-03:00"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-24 00:00", "2026-10-27 00:00",
                 ["2026-10-24 00:30:00", "2026-10-25 00:30:00", "2026-10-26 01:30:00"],
                 id="fall-back-02:30-runs-once-at-its-first-occurrence"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-25 01:10", "2026-10-27 00:00",
                 ["2026-10-26 01:30:00"], id="counting-from-inside-the-repeated-hour-never-repeats-it"),
    pytest.param("*/30 * * * *", "Europe/Berlin", "2026-10-25 00:00", "2026-10-25 02:00",
                 ["2026-10-25 00:30:00", "2026-10-25 01:00:00", "2026-10-25 01:30:00", "2026-10-25 02:00:00"],
                 id="wildcard-minutes-follow-real-time-through-the-repeat"),
    pytest.param("*/30 * * * *", "Europe/Berlin", "2026-03-29 00:00", "2026-03-29 01:30",
                 ["2026-03-29 00:30:00", "2026-03-29 01:00:00", "2026-03-29 01:30:00"],
                 id="wildcard-minutes-follow-real-time-through-the-gap"),
    pytest.param("30 2 * * *", "America/New_York", "2026-03-08 00:00", "2026-03-09 00:00",
                 ["2026-03-08 07:00:00"], id="new-york-gap-02:30-at-03:00-edt"),
    pytest.param("* 0 * * *", "Australia/Lord_Howe", "2026-04-04 15:00", "2026-04-05 13:31",
                 ["2026-04-05 13:30:00", "2026-04-05 13:31:00"],
                 id="lord-howe-back-30-minutes-counted-from-the-change-loses-no-minute"),
    pytest.param("0 0 * * *", "Australia/Lord_Howe", "2026-04-04 12:00", "2026-04-06 13:00",
                 ["2026-04-04 13:00:00", "2026-04-05 13:30:00"], id="lord-howe-midnight-across-the-change"),
    pytest.param("15,30 2 * * *", "Australia/Lord_Howe", "2026-10-03 12:00", "2026-10-04 16:00",
                 ["2026-10-03 15:30:00", "2026-10-04 15:15:00", "2026-10-04 15:30:00"],
                 id="lord-howe-forward-30-minutes-a-skipped-02:15-runs-once-at-the-jump"),
    pytest.param("45 1 * * *", "Australia/Lord_Howe", "2026-04-04 12:00", "2026-04-05 16:00",
                 ["2026-04-04 14:45:00", "2026-04-05 15:15:00"], id="lord-howe-repeated-01:45-runs-once"),
    pytest.param("@hourly", "UTC", "2026-01-01 00:00", "2026-01-01 02:30",
                 ["2026-01-01 01:00:00", "2026-01-01 02:00:00"], id="hourly-excludes-after-includes-until"),
    pytest.param("@daily", "Asia/Kolkata", "2026-01-01 00:00", "2026-01-02 00:00",
                 ["2026-01-01 18:30:00"], id="daily-is-local-midnight"),
    pytest.param("every 10s", "UTC", "2026-01-01 00:00:05", "2026-01-01 00:00:30",
                 ["2026-01-01 00:00:10", "2026-01-01 00:00:20", "2026-01-01 00:00:30"], id="every-10s"),
    pytest.param("every 10m", "Europe/Berlin", "2026-01-01 00:00", "2026-01-01 00:25",
                 ["2026-01-01 00:10:00", "2026-01-01 00:20:00"], id="every-ignores-the-time-zone"),
    pytest.param("every 1d", "UTC", "2026-01-01 00:00", "2026-01-01 00:00", [], id="empty-window"),
])
def test_slots_by_table(schedule, tz, after, until, want):
    assert got(schedule, tz, after, until) == want


def test_next_slot():
    assert next_slot("0 7 * * 1-5", "UTC", z("2026-03-06 07:00")) == z("2026-03-09 07:00")
    assert next_slot("every 2s", "UTC", z("2026-01-01 00:00:01")) == z("2026-01-01 00:00:02")


@pytest.mark.parametrize("schedule, want", [
    ("@DAILY", Schedule(cron="0 0 * * *")),
    ("  0  7 * *   1-5 ", Schedule(cron="0 7 * * 1-5")),
    ("every 2s", Schedule(interval=2)),
    ("every 10 m", Schedule(interval=600)),
    ("Every 3h", Schedule(interval=10800)),
])
def test_parse(schedule, want):
    assert parse(schedule) == want


@pytest.mark.parametrize("schedule, says", [
    ("", "non-empty string"),
    (7, "non-empty string"),
    ("every 0s", "above 0"),
    ("every 5 weeks", "is not an interval"),
    ("@fortnightly", "not a known alias"),
    ("* * * *", "has 4 fields"),
    ("0 * * * * *", "for seconds write 'every 10s'"),
    ("61 * * * *", "not a valid cron schedule"),
    ("0 0 31 2 *", "not a valid cron schedule"),
])
def test_parse_refuses_with_a_sentence(schedule, says):
    with pytest.raises(ScheduleError, match=says):
        parse(schedule)


def test_unknown_time_zone():
    with pytest.raises(ScheduleError, match="'Mars/Olympus' is not a known time zone"):
        list(slots("@daily", "Mars/Olympus", z("2026-01-01 00:00"), z("2026-01-02 00:00")))


def test_naive_datetimes_are_refused():
    with pytest.raises(TypeError):
        list(slots("@daily", "UTC", datetime.datetime(2026, 1, 1), z("2026-01-02 00:00")))


# -- properties --------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# Windows around the 2026 transitions of these zones, where mistakes live.
CENTRES = [z("2026-03-29 01:00"), z("2026-10-25 01:00"), z("2026-03-08 07:00"), z("2026-11-01 06:00"),
           z("2026-04-04 15:00"), z("2026-10-03 15:30"), z("2026-06-15 12:00")]


def field(values, step_max):
    lo, hi = values
    return st.one_of(
        st.just("*"),
        st.integers(lo, hi).map(str),
        st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(lambda p: f"{min(p)}-{max(p)}"),
        st.integers(2, step_max).map(lambda s: f"*/{s}"),
        st.lists(st.integers(lo, hi), min_size=2, max_size=3, unique=True).map(lambda v: ",".join(map(str, v))),
    )


crons = st.tuples(field((0, 59), 30), field((0, 23), 12), st.sampled_from(["*", "*", "1-28", "*/2"]),
                  st.just("*"), st.sampled_from(["*", "*", "1-5", "0,6"])).map(" ".join)
moments = st.tuples(st.sampled_from(CENTRES), st.integers(-2 * 86400, 2 * 86400)).map(
    lambda p: p[0] + datetime.timedelta(seconds=p[1]))
# three instants near one transition
triples = st.tuples(st.sampled_from(CENTRES), st.lists(st.integers(-2 * 86400, 2 * 86400), min_size=3, max_size=3)).map(
    lambda p: sorted(p[0] + datetime.timedelta(seconds=s) for s in p[1]))


@settings(max_examples=150, deadline=None)
@given(crons, st.sampled_from(ZONES), triples)
def test_where_the_count_starts_changes_nothing(cron, tz, three):
    """A leader that takes over at any instant b finds exactly the slots its
    predecessor, counting from a, had not reached: none twice, none lost."""
    a, b, c = three
    whole = list(slots(cron, tz, a, c))
    assert whole == list(slots(cron, tz, a, b)) + list(slots(cron, tz, b, c))
    assert all(a < t <= c for t in whole)
    assert whole == sorted(set(whole))


def matches(cs, local):
    """cronsim's own fields say this local wall time is one of the expression's."""
    return (local.minute in cs.minutes and local.hour in cs.hours and local.month in cs.months
            and cs.match_day(local.date()))


@settings(max_examples=100, deadline=None)
@given(crons, moments, st.integers(60, 2 * 86400))
def test_utc_slots_are_every_matching_minute(cron, after, span):
    """In UTC, the slots are exactly the whole minutes in the window whose fields
    cronsim matches, found here by brute force."""
    until = after + datetime.timedelta(seconds=span)
    cs = CronSim(cron, after)
    minute = after.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    want = []
    while minute <= until:
        if matches(cs, minute):
            want.append(minute)
        minute += datetime.timedelta(minutes=1)
    assert list(slots(cron, "UTC", after, until)) == want


@settings(max_examples=150, deadline=None)
@given(crons, st.sampled_from(ZONES[1:]), moments, st.integers(60, 2 * 86400))
def test_zoned_slots_match_in_local_time_and_never_repeat_a_fixed_time(cron, tz, after, span):
    """Each slot's local wall time matches the expression, or is the first
    minute after a gap that swallowed a match; a job at fixed times never runs
    twice at one wall time (the repeated hour runs it once)."""
    zone = zoneinfo.ZoneInfo(tz)
    until = after + datetime.timedelta(seconds=span)
    cs = CronSim(cron, after)
    out = list(slots(cron, tz, after, until))
    for t in out:
        local = t.astimezone(zone)
        before = (t - datetime.timedelta(minutes=1)).astimezone(zone)
        jumped = local.utcoffset() != before.utcoffset() and local.utcoffset() > before.utcoffset()
        assert matches(cs, local) or jumped, (t, local)
    fixed = not cron.split()[0].startswith("*") and not cron.split()[1].startswith("*")
    if fixed:
        walls = [t.astimezone(zone).replace(tzinfo=None) for t in out]
        assert len(walls) == len(set(walls))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 7200), moments, st.integers(0, 86400))
def test_every_n_is_the_multiples_of_n(interval, after, span):
    until = after + datetime.timedelta(seconds=span)
    out = list(slots(f"every {interval}s", "UTC", after, until))
    assert all(int(t.timestamp()) % interval == 0 and t.microsecond == 0 for t in out)
    assert all(after < t <= until for t in out)
    assert len(out) == int(until.timestamp()) // interval - int(after.timestamp()) // interval


@settings(max_examples=150, deadline=None)
@given(crons, st.sampled_from(ZONES), triples)
def test_no_wall_time_that_exists_once_is_missed(cron, tz, three):
    """Every minute whose local wall time matches the expression, exists and comes only once
    (outside gaps and repeats) is a slot: cronsim stepped hours by 3600 real seconds and lost
    minutes where the clocks move 30 minutes (Lord Howe)."""
    a, _, c = three
    local = zoneinfo.ZoneInfo(tz)
    found = set(slots(cron, tz, a, c))
    cs = CronSim(cron, a)
    t = a.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    while t <= c:
        wall = t.astimezone(local)
        naive = wall.replace(tzinfo=None)
        once = naive.replace(tzinfo=local, fold=0).utcoffset() == naive.replace(tzinfo=local, fold=1).utcoffset()
        if once and matches(cs, wall):
            assert t in found, f"{cron} in {tz}: the slot {t} ({naive} local) is missing"
        t += datetime.timedelta(minutes=1)
