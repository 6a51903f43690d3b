"""The HTTP meter models (meters/http_meter.py) and config.py's rules for their meter section.

Loaded by config.py for a meter of type "http" while it validates, then
unloaded: the names and messages here never share the heap with the
running driver.
"""

MODELS = ("homewizard", "homewizard_v2", "shelly_em", "shelly_em1", "shelly_3em_gen1", "shelly_em_gen1")
ONE_CHANNEL = ("shelly_em1", "shelly_em_gen1")  # one phase each


def check(errors, meter, phases):
    """Cross-field rules of a meter section of type "http"; `meter`: its fields valid on their own, `phases`: site.phases.

    errors.add(path, message[, related path]) for: a model not in MODELS, an
    empty host, a homewizard_v2 without its token or certificate name (or
    another model with them), a one-channel model on a 3-phase site (the guard would take
    the unmeasured phases as unloaded), a channel on a model without one.
    """
    model = meter.get("model")
    if model is not None and model not in MODELS:
        errors.add("meter.model", "must be one of: %s (is '%s')" % (", ".join(MODELS), model))
        model = None
    _check_v2(errors, meter, model)
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


# The product part of a HomeWizard certificate's name, appliance/<type>/<serial>
# (api-documentation.homewizard.com/docs/v2/authorization, "Hostname Validation").
CERT_TYPES = ("p1dongle", "energymeter", "energysocket", "display", "watermeter", "battery")


def _check_v2(errors, meter, model):
    # The token and the certificate name: required for homewizard_v2, empty
    # for every other model. The token's value is never part of a message.
    token = meter.get("token")
    name = meter.get("cert_hostname")
    if model != "homewizard_v2":
        if model is not None and token:
            errors.add("meter.token", "only for homewizard_v2 (API v2): leave it empty for %s" % model, "meter.model")
        if model is not None and name:
            errors.add("meter.cert_hostname", "only for homewizard_v2: leave it empty for %s" % model, "meter.model")
        return
    if token == "":
        errors.add("meter.token", "must be set for homewizard_v2: pair with tools/meterprobe.py --homewizard-pair")
    elif type(token) is str:
        # Bytes, not characters: iterating a str on MicroPython interns each
        # character for good, and this one is a secret. Neither its length
        # nor its characters are said.
        digits = token.encode()
        bad = len(digits) != 32
        for c in digits:
            bad = bad or c not in b"0123456789ABCDEF"
        if bad:
            errors.add("meter.token", "must be the 32 hex digits (0-9, A-F: upper case) the meter gave at pairing")
    if name == "":
        errors.add("meter.cert_hostname", "must be set for homewizard_v2: appliance/<type>/<serial>, e.g."
                   " appliance/p1dongle/5c2fafaabbcc (tools/meterprobe.py --homewizard-pair prints it)")
    elif type(name) is str:
        parts = name.split("/")
        serial = parts[2] if len(parts) == 3 else ""
        good = len(parts) == 3 and parts[0] == "appliance" and parts[1] in CERT_TYPES and 1 <= len(serial) <= 32
        for c in serial:
            if c not in "0123456789abcdef":
                good = False
        if not good:
            errors.add("meter.cert_hostname", "must be appliance/<type>/<serial>: type one of %s, serial the meter's"
                       " lower-case hex serial (is '%s')" % (", ".join(CERT_TYPES), name))
