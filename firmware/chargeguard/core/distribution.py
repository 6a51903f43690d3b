"""Sharing one pool of power or current between chargers, by the owner's rule.

The four distribution modes of Dynamic OCPP EVSE (its Distribution Modes
Guide), under the same names; every one first makes sure a charger gets at
least its minimum or nothing, because a car cannot charge below its minimum:

- `shared`: every taking part charger gets its minimum (in priority order,
  while the pool allows), then what is left is split equally, each up to
  what it can take; what one cannot take goes to the others;
- `priority`: the minimums as in shared, then what is left goes by priority:
  the first takes all it can, the next what remains, and so on;
- `sequential_optimized`: one at a time by priority: each takes all it can
  of what is left; one whose minimum no longer fits gets nothing and the
  next is tried (others use what the first cannot);
- `sequential_strict`: one at a time by priority, and a charger gets
  anything only when every one before it got all it can take; one that
  does not (or whose minimum does not fit) blocks all after it.

Priority order is the unique 1-based order of the configuration (EVCM and
Dynamic OCPP: 1 is first). A charger with demand 0 (unplugged, off, gated)
does not take part, so when the charging one unplugs the next eligible one
takes over on the next tick.

The pool and all amounts share one unit the caller chooses (W for a solar
surplus, mA per phase for the guard's envelope). No allocation.
"""

from chargeguard.core.optsettings import (
    DIST_PRIORITY,
    DIST_SEQUENTIAL_OPTIMIZED,
    DIST_SEQUENTIAL_STRICT,
    DIST_SHARED,
)


def priority_order(chargers):
    """Charger indices sorted by their `priority` (1 first); built once at set-up."""
    order = list(range(len(chargers)))
    order.sort(key=lambda index: chargers[index].priority)
    return order


def allocate(mode, order, mins, maxs, demands, pool, out):
    """Fill `out[i]` with charger i's share of `pool`; return what is left.

    mode: one of DISTRIBUTIONS; order: indices in priority order; mins, maxs:
    each charger's range; demands: the most each wants now (0 = not taking
    part); out: preallocated list. A charger takes part when
    min(demand, max) >= min; its share is then 0 or in [min, min(demand, max)].
    """
    for index in order:
        out[index] = 0
    if pool <= 0:
        return pool
    if mode == DIST_SEQUENTIAL_OPTIMIZED or mode == DIST_SEQUENTIAL_STRICT:
        return _sequential(mode == DIST_SEQUENTIAL_STRICT, order, mins, maxs, demands, pool, out)
    left = pool
    for index in order:
        minimum = mins[index]
        if _cap(index, maxs, demands) >= minimum and left >= minimum:
            out[index] = minimum
            left -= minimum
    if mode == DIST_PRIORITY:
        for index in order:
            if _served(index, mins, maxs, demands, out):
                give = _cap(index, maxs, demands) - out[index]
                if give > left:
                    give = left
                out[index] += give
                left -= give
        return left
    if mode != DIST_SHARED:
        raise ValueError("unknown distribution mode %r" % (mode,))
    # Equal split of the rest; each round either gives all of `share` to
    # everyone or fills at least one charger up, so len(order) rounds end it.
    for _ in range(len(order)):
        hungry = 0
        for index in order:
            if _served(index, mins, maxs, demands, out) and out[index] < _cap(index, maxs, demands):
                hungry += 1
        if not hungry or left < hungry:
            break
        share = left // hungry
        for index in order:
            if _served(index, mins, maxs, demands, out):
                give = _cap(index, maxs, demands) - out[index]
                if give > share:
                    give = share
                out[index] += give
                left -= give
    return left


def _served(index, mins, maxs, demands, out):
    """Whether the charger got its minimum in the first pass (a minimum of 0 always fits)."""
    if out[index]:
        return True
    return mins[index] == 0 and _cap(index, maxs, demands) > 0


def _cap(index, maxs, demands):
    demand = demands[index]
    return demand if demand < maxs[index] else maxs[index]


def _sequential(strict, order, mins, maxs, demands, pool, out):
    left = pool
    blocked = False
    for index in order:
        cap = _cap(index, maxs, demands)
        if cap <= 0 or cap < mins[index]:
            continue  # not taking part: neither served nor blocking
        if blocked:
            continue
        give = cap if cap < left else left
        if give >= mins[index]:
            out[index] = give
            left -= give
        if strict and give < cap:
            blocked = True
    return left
