"""Local time from UTC by a POSIX TZ rule (the form of the TZ variable, POSIX.1-2017 §8.3).

    parse(text) -> rule: a tuple of ints (see below); raises ValueError with
        the reason when `text` is not a rule this module understands.
    offset_s(rule, day, sod) -> seconds east of UTC in force at UTC day
        `day` (days since 1970-01-01) and second of that day `sod` (0..86399).
    local_day(rule, day, sod) -> the local day number at that moment (days
        since 1970-01-01 in local time: it changes at local midnight).
    local_sod(rule, day, sod) -> the local second of the day (0..86399).
    days(year, month, day) -> days since 1970-01-01 of a civil date.

The moment is given as a day and a second of the day, never as one Unix
time: a Unix time is past 2**30, a long int (an allocation) on a 32-bit
port; every figure here stays a small int.

Accepted rules (what tzdata's POSIX strings use), e.g.
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
_HOUR_S = const(3600)
_M = const(0)
_J = const(1)
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


# -- parsing (at start-up and in config.py's check only) ------------------------


def parse(text):
    """The rule tuple of a POSIX TZ string; ValueError("...") names what is wrong."""
    data = text.encode() if type(text) is str else bytes(text)
    end = _name(data, 0)
    end, std = _offset(data, end, 24)
    std = -std  # POSIX offsets are west of Greenwich
    if end == len(data):
        return (std,)
    end = _name(data, end)
    dst = std + _HOUR_S
    if end < len(data) and data[end] != 44:  # not ','
        end, west = _offset(data, end, 24)
        dst = -west
    if end == len(data):
        raise ValueError("daylight saving time needs its start and end rules, e.g. ,M3.5.0,M10.5.0/3")
    rule = [std, dst]
    for _ in range(2):
        if end >= len(data) or data[end] != 44:
            raise ValueError("expected ',' and a rule (Mm.w.d, Jn or n) at character %d" % (end + 1))
        end = _date(data, end + 1, rule)
    if end != len(data):
        raise ValueError("unexpected text at character %d" % (end + 1))
    return tuple(rule)


def _name(data, at):
    # A zone abbreviation: 3+ letters, or <3+ letters, digits, + or ->.
    if at < len(data) and data[at] == 60:  # '<'
        close = data.find(b">", at)
        if close < 0:
            raise ValueError("'<' without '>'")
        for code in data[at + 1 : close]:
            if not (_alpha(code) or 48 <= code <= 57 or code == 43 or code == 45):
                raise ValueError("a <quoted> name may hold letters, digits, '+' and '-' only")
        if close - at - 1 < 3:
            raise ValueError("a zone name needs at least 3 characters")
        return close + 1
    end = at
    while end < len(data) and _alpha(data[end]):
        end += 1
    if end - at < 3:
        raise ValueError("expected a zone name of at least 3 letters at character %d" % (at + 1))
    return end


def _alpha(code):
    return 65 <= code <= 90 or 97 <= code <= 122


def _number(data, at, digits):
    # 1..digits decimal digits: (end, value); ValueError when none.
    end = at
    value = 0
    while end < len(data) and end - at < digits and 48 <= data[end] <= 57:
        value = value * 10 + data[end] - 48
        end += 1
    if end == at:
        raise ValueError("expected a number at character %d" % (at + 1))
    return end, value


def _offset(data, at, max_hours):
    # [+|-]hh[:mm[:ss]] -> (end, seconds, signed as written).
    sign = 1
    if at < len(data) and (data[at] == 43 or data[at] == 45):
        sign = -1 if data[at] == 45 else 1
        at += 1
    at, hours = _number(data, at, 3)
    seconds = hours * _HOUR_S
    if hours > max_hours:
        raise ValueError("hours must be at most %d (is %d)" % (max_hours, hours))
    for scale in (60, 1):
        if at < len(data) and data[at] == 58:  # ':'
            at, part = _number(data, at + 1, 2)
            if part > 59:
                raise ValueError("minutes and seconds must be below 60 (is %d)" % part)
            seconds += part * scale
        else:
            break
    return at, sign * seconds


def _date(data, at, rule):
    # One transition: Mm.w.d | Jn | n, then [/time]; appended to `rule`.
    if at < len(data) and data[at] == 77:  # 'M'
        at, month = _number(data, at + 1, 2)
        parts = [month]
        for limit in (5, 6):
            if at >= len(data) or data[at] != 46:  # '.'
                raise ValueError("Mm.w.d needs month, week and day separated by '.'")
            at, value = _number(data, at + 1, 1)
            parts.append(value)
        if not 1 <= month <= 12 or not 1 <= parts[1] <= 5 or parts[2] > 6:
            raise ValueError("Mm.w.d needs month 1-12, week 1-5 and day 0-6 (is M%d.%d.%d)" % tuple(parts))
        rule.extend((_M, month, parts[1], parts[2]))
    elif at < len(data) and data[at] == 74:  # 'J'
        at, number = _number(data, at + 1, 3)
        if not 1 <= number <= 365:
            raise ValueError("Jn needs n from 1 to 365 (is %d)" % number)
        rule.extend((_J, number, 0, 0))
    else:
        at, number = _number(data, at, 3)
        if number > 365:
            raise ValueError("a day number must be 0 to 365 (is %d)" % number)
        rule.extend((_N, number, 0, 0))
    time_s = 2 * _HOUR_S
    if at < len(data) and data[at] == 47:  # '/'
        at, time_s = _offset(data, at + 1, 167)
    rule.append(time_s)
    return at
