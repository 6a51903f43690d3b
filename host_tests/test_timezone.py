"""core/localtime.py and core/tzparse.py: POSIX TZ rules, local day and DST transitions (both runtimes)."""

from chargeguard.core import localtime as lt
from chargeguard.core.tzparse import parse

EUROPE = "CET-1CEST,M3.5.0,M10.5.0/3"
UK = "GMT0BST,M3.5.0/1,M10.5.0"
US_EAST = "EST5EDT,M3.2.0,M11.1.0"
US_PACIFIC = "PST8PDT,M3.2.0,M11.1.0"
SYDNEY = "AEST-10AEDT,M10.1.0,M4.1.0/3"
GREENLAND = "<-02>2<-01>,M3.5.0/-1,M10.5.0/0"
HOUR = 3600


def at(rule, year, month, day, hour, minute=0, second=0):
    """offset_s at a UTC civil time."""
    return lt.offset_s(rule, lt.days(year, month, day), hour * HOUR + minute * 60 + second)


def test_days_counts_from_1970_over_leap_years():
    assert lt.days(1970, 1, 1) == 0 and lt.days(1970, 1, 2) == 1
    assert lt.days(2000, 3, 1) == 11017  # 2000 is a leap year (divisible by 400)
    assert lt.days(2024, 2, 29) + 1 == lt.days(2024, 3, 1)
    assert lt.days(2100, 3, 1) - lt.days(2100, 2, 28) == 1  # 2100 is not
    assert lt.days(2026, 11, 30) == 20787
    assert lt._year_of(lt.days(2026, 12, 31)) == 2026 and lt._year_of(lt.days(2027, 1, 1)) == 2027


def test_fixed_offsets():
    assert parse("UTC0") == (0,)
    assert parse("<+03>-3") == (3 * HOUR,)
    assert parse("IST-5:30") == (5 * HOUR + 1800,)
    assert parse("<-0930>9:30") == (-(9 * HOUR + 1800),)
    assert parse("XYZ+4:05:06") == (-(4 * HOUR + 5 * 60 + 6),)
    rule = parse("IST-5:30")
    day = lt.days(2026, 6, 1)
    assert lt.offset_s(rule, day, 0) == 19800
    # 20:00 UTC is 01:30 the next day in India
    assert lt.local_day(rule, day, 20 * HOUR) == day + 1 and lt.local_sod(rule, day, 20 * HOUR) == 5400
    west = parse("<-03>3")
    assert lt.local_day(west, day, 2 * HOUR) == day - 1 and lt.local_sod(west, day, 2 * HOUR) == 23 * HOUR


def test_europe_switches_at_one_utc_on_the_last_sundays():
    rule = parse(EUROPE)
    # 2026: 29 March and 25 October (last Sundays); at 01:00 UTC both times.
    assert at(rule, 2026, 3, 29, 0, 59, 59) == HOUR and at(rule, 2026, 3, 29, 1) == 2 * HOUR
    assert at(rule, 2026, 10, 25, 0, 59, 59) == 2 * HOUR and at(rule, 2026, 10, 25, 1) == HOUR
    # 2027: 28 March and 31 October; the week before is still winter / summer.
    assert at(rule, 2027, 3, 21, 12) == HOUR and at(rule, 2027, 3, 28, 1) == 2 * HOUR
    assert at(rule, 2027, 10, 31, 0, 59) == 2 * HOUR and at(rule, 2027, 10, 31, 1) == HOUR
    assert at(rule, 2026, 1, 15, 12) == HOUR and at(rule, 2026, 7, 15, 12) == 2 * HOUR
    uk = parse(UK)
    assert at(uk, 2026, 3, 29, 0, 59) == 0 and at(uk, 2026, 3, 29, 1) == HOUR
    assert at(uk, 2026, 10, 25, 0, 59) == HOUR and at(uk, 2026, 10, 25, 1) == 0


def test_us_rules_switch_on_the_second_and_first_sundays():
    east = parse(US_EAST)
    # 2026: 8 March 02:00 EST = 07:00 UTC; 1 November 02:00 EDT = 06:00 UTC.
    assert at(east, 2026, 3, 8, 6, 59, 59) == -5 * HOUR and at(east, 2026, 3, 8, 7) == -4 * HOUR
    assert at(east, 2026, 11, 1, 5, 59, 59) == -4 * HOUR and at(east, 2026, 11, 1, 6) == -5 * HOUR
    # 2025: 9 March and 2 November (a month starting on Saturday).
    assert at(east, 2025, 3, 9, 6, 59) == -5 * HOUR and at(east, 2025, 3, 9, 7) == -4 * HOUR
    assert at(east, 2025, 11, 2, 5, 59) == -4 * HOUR and at(east, 2025, 11, 2, 6) == -5 * HOUR
    pacific = parse(US_PACIFIC)
    assert at(pacific, 2026, 3, 8, 9, 59) == -8 * HOUR and at(pacific, 2026, 3, 8, 10) == -7 * HOUR


def test_south_of_the_equator_dst_spans_new_year():
    rule = parse(SYDNEY)
    # 2026: ends 5 April 03:00 AEDT (16:00 UTC on the 4th), starts 4 October 02:00 AEST (16:00 UTC on the 3rd).
    assert at(rule, 2026, 1, 10, 0) == 11 * HOUR
    assert at(rule, 2026, 4, 4, 15, 59) == 11 * HOUR and at(rule, 2026, 4, 4, 16) == 10 * HOUR
    assert at(rule, 2026, 10, 3, 15, 59) == 10 * HOUR and at(rule, 2026, 10, 3, 16) == 11 * HOUR
    assert at(rule, 2026, 12, 31, 23) == 11 * HOUR


def test_negative_and_midnight_transition_times():
    rule = parse(GREENLAND)
    assert rule[6] == -HOUR and rule[11] == 0
    # 2026: starts 28 March 23:00 local standard (-02) = 29 March 01:00 UTC; ends 25 October 00:00 local -01 = 01:00 UTC.
    assert at(rule, 2026, 3, 29, 0, 59) == -2 * HOUR and at(rule, 2026, 3, 29, 1) == -HOUR
    assert at(rule, 2026, 10, 25, 0, 59) == -HOUR and at(rule, 2026, 10, 25, 1) == -2 * HOUR


def test_julian_and_zero_based_day_rules():
    # J60 is 1 March in every year (29 February never counted); 59 is 29 February in a leap year.
    rule = parse("AAA0BBB,J60/0,J300/0")
    assert at(rule, 2024, 2, 29, 23, 59) == 0 and at(rule, 2024, 3, 1, 0) == HOUR
    rule = parse("AAA0BBB,59/0,300/0")
    assert at(rule, 2024, 2, 28, 23, 59) == 0 and at(rule, 2024, 2, 29, 0) == HOUR
    assert at(rule, 2023, 3, 1, 0) == HOUR  # day 59 of 2023 is 1 March
    assert parse("EST5EDT4,J60,300/1:30") == (-5 * HOUR, -4 * HOUR, 1, 60, 0, 0, 7200, 2, 300, 0, 0, 5400)


def test_the_local_day_changes_at_local_midnight_on_dst_days():
    rule = parse(EUROPE)
    spring = lt.days(2026, 3, 29)
    # 29 March 2026 begins at 23:00 UTC on the 28th (CET) and ends at 22:00 UTC (CEST): a 23-hour day.
    assert lt.local_day(rule, spring - 1, 22 * HOUR + 3599) == spring - 1
    assert lt.local_day(rule, spring - 1, 23 * HOUR) == spring
    assert lt.local_day(rule, spring, 21 * HOUR + 3599) == spring and lt.local_day(rule, spring, 22 * HOUR) == spring + 1
    autumn = lt.days(2026, 10, 25)
    # 25 October 2026 begins at 22:00 UTC on the 24th (CEST) and ends at 23:00 UTC (CET): 25 hours.
    assert lt.local_day(rule, autumn - 1, 21 * HOUR + 3599) == autumn - 1
    assert lt.local_day(rule, autumn - 1, 22 * HOUR) == autumn
    assert lt.local_day(rule, autumn, 22 * HOUR + 3599) == autumn and lt.local_day(rule, autumn, 23 * HOUR) == autumn + 1
    assert lt.local_sod(rule, autumn, 23 * HOUR) == 0
    east = parse(US_EAST)
    day = lt.days(2026, 3, 8)
    assert lt.local_day(east, day, 4 * HOUR + 59 * 60) == day - 1 and lt.local_day(east, day, 5 * HOUR) == day
    assert lt.local_day(east, day + 1, 3 * HOUR + 3599) == day and lt.local_day(east, day + 1, 4 * HOUR) == day + 1


def test_bad_rules_say_what_is_wrong():
    cases = (
        ("", "zone name"),
        ("CE-1", "at least 3 letters"),
        ("CET", "expected a number"),
        ("CET-25", "at most 24"),
        ("CET-1:60", "below 60"),
        ("CET-1CEST", "start and end rules"),
        ("CET-1CEST,M3.5.0", "expected ','"),
        ("CET-1CEST,M13.5.0,M10.5.0/3", "month 1-12"),
        ("CET-1CEST,M3.6.0,M10.5.0/3", "week 1-5"),
        ("CET-1CEST,M3.5.7,M10.5.0/3", "day 0-6"),
        ("CET-1CEST,M3.5,M10.5.0/3", "separated by '.'"),
        ("CET-1CEST,J0,J300", "1 to 365"),
        ("CET-1CEST,366,300", "0 to 365"),
        ("CET-1CEST,M3.5.0/168,M10.5.0", "at most 167"),
        ("CET-1CEST,M3.5.0,M10.5.0/3x", "unexpected text at character 27"),
        ("<+3>-3", "at least 3"),
        ("<+03-3", "without '>'"),
        ("<+0 3>-3", "letters, digits"),
    )
    for text, words in cases:
        try:
            parse(text)
        except ValueError as error:
            assert words in error.args[0], (text, error.args[0])
        else:
            raise AssertionError("%r was accepted" % text)


def test_offsets_agree_with_the_c_library():
    # The host's C library reads the same POSIX TZ strings (CPython only: the unix port has no tzset).
    import sys

    from support import skip

    if sys.implementation.name == "micropython":
        skip("needs time.tzset (CPython)")
    import os
    import time

    if not hasattr(time, "tzset"):
        skip("no time.tzset on this host")
    saved = os.environ.get("TZ")
    try:
        for text in (EUROPE, UK, US_EAST, US_PACIFIC, SYDNEY, GREENLAND, "IST-5:30", "<+0545>-5:45",
                     "IST-1GMT0,M10.5.0,M3.5.0/1", "EET-2EEST,M3.5.0/3,M10.5.0/4", "WET0WEST,M3.5.0/1,M10.5.0"):
            os.environ["TZ"] = text
            time.tzset()
            rule = parse(text)
            # Every 37 minutes over two years, and every minute around the transitions.
            start = lt.days(2025, 1, 1) * 86400
            moments = list(range(start, start + 2 * 365 * 86400, 37 * 60))
            for moment in moments:
                day, sod = divmod(moment, 86400)
                expected = time.localtime(moment).tm_gmtoff
                assert lt.offset_s(rule, day, sod) == expected, (text, time.gmtime(moment))
                local = moment + expected
                assert lt.local_day(rule, day, sod) == local // 86400, (text, moment)
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
