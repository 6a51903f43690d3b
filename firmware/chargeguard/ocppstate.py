"""An OCPP box's connection as interfaces see it (ChargerState.ocpp in the site state, state.py).

Loaded only on a site with a charger of type "ocpp" (state.py makes an OcppLink per such box): the
web pages and MQTT of other sites never pay for it. The driver (chargers/ocpp.py) keeps the facts
and bumps `link_seq` when one changes; SiteState.update copies them here. docs/ocpp.md, "Status".
"""

from chargeguard.core.ticks import ticks_diff


class OcppLink:
    """The connection of an OCPP box (chargers/ocpp.py) as interfaces see it; copied from the driver
    by SiteState.update only when the driver's `link_seq` moved (references and small ints: nothing
    is allocated).

    charge_point_id (str); connected (bool); vendor, model, firmware (str or None, from its
    BootNotification); last_message: the action of the box's last call ("MeterValues"), None before one;
    last_refusal: the last call the box refused, answered with a CALLERROR or did not answer in time,
    with the limit for a profile ("SetChargingProfile: Rejected (0.0 A)"), None before one.
    When, two ways, because the device's clock may not be set yet (no SNTP answer):
        connected_since_s, last_message_s, last_refusal_s   seconds since 1970 UTC (iso_utc() makes
                     the text), None while the wall clock is not set (connected_since_s is dated
                     by the first message after it is set);
        connected_for_s, last_message_age_s, last_refusal_age_s   seconds ago by the device's ticks,
                     refreshed at every decision (a tick count: wrong after about 6 days, like
                     uptime_ms); None when it never happened (connected_for_s: not connected).
    """

    def __init__(self, charge_point_id):
        self.charge_point_id = charge_point_id
        self.connected = False
        self.vendor = self.model = self.firmware = None
        self.last_message = self.last_refusal = None
        self.connected_since_s = self.last_message_s = self.last_refusal_s = None
        self.connected_for_s = self.last_message_age_s = self.last_refusal_age_s = None
        self._since_ms = self._message_ms = self._refusal_ms = None
        self._seq = -1

    def update(self, driver, now_ms):
        """Copy the driver's link status when it changed (True then); refresh the ages."""
        changed = driver.link_seq != self._seq
        if changed:
            self._seq = driver.link_seq
            self.connected = driver.session is not None
            self.vendor = driver.vendor
            self.model = driver.model
            self.firmware = driver.firmware
            self.last_message = driver.last_message
            self.last_refusal = driver.last_refusal
            self.connected_since_s = driver.connected_since_s
            self.last_message_s = driver.last_message_s
            self.last_refusal_s = driver.last_refusal_s
            self._since_ms = driver.connected_since_ms
            self._message_ms = driver.last_message_ms
            self._refusal_ms = driver.last_refusal_ms
        self.connected_for_s = _age_s(now_ms, self._since_ms)
        self.last_message_age_s = _age_s(now_ms, self._message_ms)
        self.last_refusal_age_s = _age_s(now_ms, self._refusal_ms)
        return changed

    def doc(self):
        """The link as a JSON-ready dict (GET /api/status, docs/api.md): times as ISO 8601 UTC (None while
        the clock is not set) and as ages in seconds."""
        return {
            "charge_point_id": self.charge_point_id,
            "connected": self.connected,
            "connected_since": iso_utc(self.connected_since_s),
            "connected_for_s": self.connected_for_s,
            "last_message": self.last_message,
            "last_message_at": iso_utc(self.last_message_s),
            "last_message_age_s": self.last_message_age_s,
            "last_refusal": self.last_refusal,
            "last_refusal_at": iso_utc(self.last_refusal_s),
            "last_refusal_age_s": self.last_refusal_age_s,
            "vendor": self.vendor,
            "model": self.model,
            "firmware": self.firmware,
        }


def _age_s(now_ms, then_ms):
    return None if then_ms is None else ticks_diff(now_ms, then_ms) // 1000


def iso_utc(seconds):
    """ISO 8601 UTC text of `seconds` since 1970 ("2026-11-30T08:41:00Z"); None for None.

    The form Home Assistant's timestamp sensors take (a zone is required).
    """
    if seconds is None:
        return None
    import time

    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (t[0], t[1], t[2], t[3], t[4], t[5])
