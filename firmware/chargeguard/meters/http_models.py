"""The HTTP meter models (meters/http_meter.py) and config.py's rules for their meter section.

Loaded by config.py for a meter of type "http" while it validates, then
unloaded: the names and messages here never share the heap with the
running driver.
"""

MODELS = ("homewizard", "shelly_em", "shelly_em1", "shelly_3em_gen1", "shelly_em_gen1")
ONE_CHANNEL = ("shelly_em1", "shelly_em_gen1")  # one phase each


def check(errors, meter, phases):
    """Cross-field rules of a meter section of type "http"; `meter`: its fields valid on their own, `phases`: site.phases.

    errors.add(path, message[, related path]) for: a model not in MODELS, an
    empty host, a one-channel model on a 3-phase site (the guard would take
    the unmeasured phases as unloaded), a channel on a model without one.
    """
    model = meter.get("model")
    if model is not None and model not in MODELS:
        errors.add("meter.model", "must be one of: %s (is '%s')" % (", ".join(MODELS), model))
        model = None
    if meter.get("host") == "":
        errors.add("meter.host", "must be set for an HTTP meter: the meter's IPv4 address or host name")
    one = model in ONE_CHANNEL
    if one and phases == 3:
        message = "%s measures one phase: only for site.phases 1 (a 3-phase site needs shelly_em or shelly_3em_gen1)"
        errors.add("meter.model", message % model, "site.phases")
    channel = meter.get("channel")
    if model is None or not channel:
        return
    if model == "shelly_em_gen1" and channel > 1:
        errors.add("meter.channel", "must be 0 or 1 for shelly_em_gen1 (its two emeters) (is %d)" % channel, "meter.model")
    elif not one:
        message = "must be 0 for %s: only shelly_em1 and shelly_em_gen1 have channels (is %d)" % (model, channel)
        errors.add("meter.channel", message, "meter.model")
