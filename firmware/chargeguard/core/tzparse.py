"""Reading a POSIX TZ string (the TZ variable's form, POSIX.1-2017 §8.3) into core/localtime.py's rule tuple.

    parse(text) -> rule tuple (see core/localtime.py for the form and the
        accepted rules); raises ValueError(reason) when `text` is not a rule
        this module understands, e.g. "expected a zone name of at least 3
        letters at character 1" or "daylight saving time needs its start
        and end rules, e.g. ,M3.5.0,M10.5.0/3".

Needed once at start-up (energylog.py) and in config.py's check: both
unload it afterwards, so its code does not stay in the heap.
"""

from micropython import const

_HOUR_S = const(3600)
_M = const(0)  # core/localtime.py's rule kinds
_J = const(1)
_N = const(2)


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
