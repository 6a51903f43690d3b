"""Local time from UTC by a POSIX TZ rule (the form of the TZ variable, POSIX.1-2017 §8.3).

The rule comes from core/tzparse.parse() (a module of its own: needed once
at start-up and in config.py's check, then unloaded).

    offset_s(rule, day, sod) -> seconds east of UTC in force at UTC day
        `day` (days since 1970-01-01) and second of that day `sod` (0..86399).
    local_day(rule, day, sod) -> the local day number at that moment (days
        since 1970-01-01 in local time: it changes at local midnight).
    local_sod(rule, day, sod) -> the local second of the day (0..86399).
    days(year, month, day) -> days since 1970-01-01 of a civil date.

The moment is given as a day and a second of the day, never as one Unix
time: a Unix time is past 2**30, a long int (an allocation) on a 32-bit
port; every figure here stays a small int.

Rules (what tzdata's POSIX strings use; core/tzparse.py reads them), e.g.
    "UTC0", "<+03>-3", "IST-5:30"                  fixed offsets
    "CET-1CEST,M3.5.0,M10.5.0/3"                   central Europe
    "GMT0BST,M3.5.0/1,M10.5.0"                     United Kingdom
    "EST5EDT,M3.2.0,M11.1.0"                       US Eastern
    "AEST-10AEDT,M10.1.0,M4.1.0/3"                 south of the equator
    "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1"             negative transition times
Names are 3 or more letters, or <quoted> (letters, digits, + and -); an
offset is [+|-]hh[:mm[:ss]] WEST of Greenwich (so CET is -1), hours 0..24;
the DST offset defaults to one hour east of standard time. DST needs both
transition rules (a bare "CET-1CEST" is refused: POSIX leaves its dates to
the system). A rule is Mm.w.d (day d, 0 = Sunday, of week w, 5 = last, of
month m), Jn (1..365, 29 February never counted) or n (0..365), optionally
/time (local time before the change, hours -167..167, default 02:00:00).

Rule tuple: (std_east_s,) without DST, else (std_east_s, dst_east_s,
start_kind, start_a, start_b, start_c, start_time_s, end_kind, end_a,
end_b, end_c, end_time_s) with kind 0 = Mm.w.d (a, b, c = m, w, d),
1 = Jn, 2 = n (a = n).

The transitions are worked out in the UTC year of the moment asked: a rule
whose change falls within its offset of New Year would be off near that
boundary (no zone's rule does that).
"""

from micropython import const

_DAY_S = const(86400)
_J = const(1)  # rule kinds (0 = Mm.w.d, see above)
_N = const(2)
# Days before each month in a common year.
_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)


def _leaps(year):
    # Leap years from 1 to `year` inclusive (proleptic Gregorian).
    return year // 4 - year // 100 + year // 400


def _is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _jan1(year):
    # Days since 1970-01-01 of 1 January of `year`.
    return 365 * (year - 1970) + _leaps(year - 1) - _leaps(1969)


def days(year, month, day):
    """Days since 1970-01-01 of the civil date year-month-day (month 1..12)."""
    extra = 1 if month > 2 and _is_leap(year) else 0
    return _jan1(year) + _BEFORE[month - 1] + extra + day - 1


def _year_of(day):
    # The year that holds day number `day`.
    year = 1970 + day // 365
    while _jan1(year) > day:
        year -= 1
    return year


def _change_s(rule, at, year, jan1):
    # When the transition described at rule[at:at + 5] happens in `year`:
    # seconds from 1 January 00:00 (in the local time before the change).
    kind = rule[at]
    a = rule[at + 1]
    if kind == _J:
        doy = a - 1 + (1 if _is_leap(year) and a >= 60 else 0)
    elif kind == _N:
        doy = a
    else:
        leap = 1 if a > 2 and _is_leap(year) else 0
        first = _BEFORE[a - 1] + leap  # day of the year of the month's 1st
        length = _BEFORE[a] - _BEFORE[a - 1] + (1 if a == 2 and _is_leap(year) else 0)
        weekday = (jan1 + first + 4) % 7  # 1970-01-01 was a Thursday (4; Sunday = 0)
        doy = first + (rule[at + 3] - weekday) % 7 + 7 * (rule[at + 2] - 1)
        while doy >= first + length:  # week 5 = the last such day of the month
            doy -= 7
    return doy * _DAY_S + rule[at + 4]


def offset_s(rule, day, sod):
    """Seconds east of UTC in force at UTC day `day`, second `sod` of it."""
    std = rule[0]
    if len(rule) == 1:
        return std
    dst = rule[1]
    year = _year_of(day)
    jan1 = _jan1(year)
    now = (day - jan1) * _DAY_S + sod
    # Start is given in standard time, end in daylight time: both to UTC.
    start = _change_s(rule, 2, year, jan1) - std
    end = _change_s(rule, 7, year, jan1) - dst
    if start < end:
        summer = start <= now < end
    else:  # south of the equator: DST over New Year
        summer = not (end <= now < start)
    return dst if summer else std


def local_day(rule, day, sod):
    """The local day number (days since 1970-01-01 local) at UTC day `day`, second `sod`."""
    return day + (sod + offset_s(rule, day, sod)) // _DAY_S


def local_sod(rule, day, sod):
    """The local second of the day (0..86399) at UTC day `day`, second `sod`."""
    return (sod + offset_s(rule, day, sod)) % _DAY_S
