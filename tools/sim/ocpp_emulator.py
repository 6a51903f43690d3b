"""An OCPP 1.6J wallbox for the simulator and the tests: mobilityhouse's `ocpp` package as the charge point.

The box connects to ChargeGuard's central system (ws://127.0.0.1:<port>/<id>), boots, reports its
connector and a car, starts a transaction and sends MeterValues every MeterValueSampleInterval
seconds (10 s by default, or what ChargeGuard set with ChangeConfiguration). It keeps the charging
profiles it accepts and offers what they allow now (OCPP 1.6 section 3.13: per purpose the valid
profile with the highest stack level; TxDefaultProfile here), the car following after `car_delay_s`.

Without a profile that applies the box offers its own maximum, `max_a` (the installer's hardware
setting: 16 A for an 11 kW box, 32 A for 22 kW), from the moment it boots with a car plugged in: a
real box does not wait for a central system to limit it. OCPP 1.6 sets no lower default (a
TxDefaultProfile is what limits new transactions, section 3.13.2), and users of other central systems
report just that: a box whose profiles were cleared, or that was not sent one before its session
started, charging at its "full unrestricted hardware maximum" (16 A x 3 = 11 kW) until a profile came
(github.com/JoaoPedroBelo/bmw-wallbox-ha issues 15 and 19). With a profile it offers the profile's
limit, never more than `max_a`. So a central system must limit a new box at once: ChargeGuard sets
its failsafe profile right after the BootNotification (chargers/ocpp.py).

Registration as OCPP 1.6 edition 2 section 4.2 has it: the box sends its BootNotification first and
nothing else until one is answered Accepted or Pending. While Pending it sends no request at all (no
StatusNotification, no StartTransaction, no MeterValues) but the BootNotification a TriggerMessage asks
for, answers every call of the central system (configuration, profiles), refuses RemoteStart/Stop
(not allowed while Pending; EVerest's libocpp answers Rejected, its pull request 520), and boots again
after the answer's `interval` (its own 30 s when 0) or at once when a TriggerMessage asks. Rejected: it
waits the interval and boots again. A box never Accepted before offers nothing (section 4.2.1: "advisable
to deny all charging services at a Charge Point if [it] has never before been Accepted"; MicroOcpp's
default, PreBootTransactions false) unless `pre_boot_transactions` (OpenEVSE sets it: a car charges
before the central system accepted the box). `sent` lists (action, registration status then) of every
request the box sent.

Quirks (keyword arguments), each one a behaviour seen in real boxes (docs/ocpp.md):
    max_a           the box's own maximum (A a phase): its offer without a profile, and the most it offers
                    with one
    unit            "A", "W" or "A,W": ChargingScheduleAllowedChargingRateUnit; a profile in another unit
                    is Rejected
    max_stack_level ChargeProfileMaxStackLevel; a profile above it is Rejected
    refuse_zero     a profile with a limit 0 is Rejected
    connector_only  1: a profile for connector 0 is Rejected (the box wants connector 1)
    status_first    a StatusNotification before the BootNotification (answers the TriggerMessage)
    pings           False: the box never pings (websockets' keepalive off)
    subprotocol     False: no Sec-WebSocket-Protocol header
    path            the URL path before the id ("" = ws://host:port/<id>)
    suffix          after the id: "/" (a trailing slash), "?token=1" (a query string)
    password        HTTP Basic (security profile 1), user = the id
    stall           after its first BootNotification's answer the box stops reading its socket (a hung box:
                    calls to it are never answered, its TCP window fills)
    pre_boot_transactions  True: the box lets a car charge before it was ever Accepted (see above)
    plugged         False: no car (the box draws nothing)
    meter_style     "string" (values as strings, units W / Wh, phases L1), "quirky" (numbers, kW / kWh,
                    phases L1-N, meterValue as one object, timestamps without a zone)
    clock_offset_s  the box's clock is this far ahead of the true time (a drifting or never-set clock):
                    its timestamps and its reading of an Absolute profile's startSchedule use it; a
                    Relative profile counts from when the box received it

The box runs in a thread with its own event loop; the simulator reads `drawn_current_ma()` (the site
model) and `limit_a()` (what the box offers now, None = no profile).
"""

import asyncio
import base64
import datetime
import threading
import time

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

DEFAULT_MAX_A = 16  # the box's own maximum (its hardware setting, A a phase) unless max_a says otherwise
RECEIVED_KEPT = 100  # profiles kept in OcppBox.received
VOLTAGE_V = 230


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _parse(text):
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


class _Point(ChargePoint):
    box = None  # the OcppBox (set per instance)

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None, **_):
        self.box.log.append(("GetConfiguration", key))
        rows = {
            "ChargingScheduleAllowedChargingRateUnit": ",".join(
                {"A": "Current", "W": "Power"}[unit] for unit in self.box.unit.split(",")
            ),
            "ChargeProfileMaxStackLevel": str(self.box.max_stack_level),
            "MeterValueSampleInterval": str(self.box.meter_interval_s),
        }
        known = [{"key": name, "readonly": False, "value": rows[name]} for name in (key or rows) if name in rows]
        unknown = [name for name in (key or ()) if name not in rows]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value, **_):
        self.box.log.append(("ChangeConfiguration", key, value))
        if key == "MeterValueSampleInterval":
            self.box.meter_interval_s = int(value)
            return call_result.ChangeConfiguration(status="Accepted")
        if key == "MeterValuesSampledData":
            return call_result.ChangeConfiguration(status="Accepted")
        return call_result.ChangeConfiguration(status="NotSupported")

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles, **_):
        profile = cs_charging_profiles
        schedule = profile["charging_schedule"]
        limits = [period["limit"] for period in schedule["charging_schedule_period"]]
        box = self.box
        box.log.append(("SetChargingProfile", connector_id, profile["stack_level"], schedule["charging_rate_unit"], limits))
        box.received.append(profile)
        del box.received[:-RECEIVED_KEPT]  # a long `make sim` renews every 20 s: the recent ones are enough
        refused = (
            schedule["charging_rate_unit"] not in box.unit.split(",")
            or profile["stack_level"] > box.max_stack_level
            or (box.refuse_zero and 0 in limits)
            or (box.connector_only and connector_id != box.connector_only)
            or profile["charging_profile_purpose"] != "TxDefaultProfile"
        )
        if refused:
            box.refusals += 1
            return call_result.SetChargingProfile(status="Rejected")
        with box.lock:
            # Same id, or same stack level and purpose: replaced (OCPP 1.6, 5.16.3).
            box.profiles = [
                old for old in box.profiles
                if old["charging_profile_id"] != profile["charging_profile_id"] and old["stack_level"] != profile["stack_level"]
            ]
            box.profiles.append(dict(profile, received=box.now()))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kwargs):
        self.box.log.append(("ClearChargingProfile", kwargs.get("charging_profile_purpose")))
        with self.box.lock:
            self.box.profiles = []
        return call_result.ClearChargingProfile(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message, **_):
        self.box.log.append(("TriggerMessage", requested_message))
        if requested_message == "BootNotification":
            self.box.boot_wanted.set()
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id, **_):
        self.box.log.append(("RemoteStopTransaction", transaction_id))
        if self.box.registration != "Accepted":
            return call_result.RemoteStopTransaction(status="Rejected")  # not allowed while Pending (4.2)
        self.box.stop_wanted = True
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, **_):
        self.box.log.append(("RemoteStartTransaction", id_tag))
        if self.box.registration != "Accepted":
            return call_result.RemoteStartTransaction(status="Rejected")  # not allowed while Pending (4.2)
        self.box.start_wanted = True
        return call_result.RemoteStartTransaction(status="Accepted")


class OcppBox:
    """One OCPP 1.6J charge point (see the module text for the quirks)."""

    def __init__(self, charge_point_id, port, *, phases=3, unit="A", max_stack_level=8, refuse_zero=False,
                 connector_only=0, status_first=False, pings=True, subprotocol=True, path="", suffix="", password=None,
                 meter_style="string", car_max_ma=32000, car_delay_s=0.5, meter_interval_s=10, stall=False,
                 plugged=True, clock_offset_s=0, max_a=DEFAULT_MAX_A, pre_boot_transactions=False):
        self.id = charge_point_id
        self.port = port
        self.phases = phases
        self.unit = unit
        self.max_a = max_a
        self.max_stack_level = max_stack_level
        self.refuse_zero = refuse_zero
        self.connector_only = connector_only
        self.status_first = status_first
        self.pings = pings
        self.subprotocol = subprotocol
        self.path = path
        self.suffix = suffix
        self.password = password
        self.meter_style = meter_style
        self.car_max_ma = car_max_ma
        self.car_delay_s = car_delay_s
        self.meter_interval_s = meter_interval_s
        self.lock = threading.Lock()
        self.profiles = []
        self.received = []  # the last RECEIVED_KEPT csChargingProfiles sent to the box (snake_case keys), accepted or not
        self.clock_offset_s = clock_offset_s
        self.refusals = 0
        self.log = []  # calls from the central system, in order
        self.connections = 0
        self.reconnect_s = 0.3  # how long a dropped box waits before it connects again
        self.booted = 0  # BootNotifications accepted
        self.registration = None  # the last BootNotification's answer: None, "Pending", "Accepted", "Rejected"
        self.ever_accepted = False  # Accepted once since it started (a car may charge, 4.2.1)
        self.pre_boot_transactions = pre_boot_transactions
        self.sent = []  # (action, registration status then) of every request the box sent
        self.pending_s = 0.0  # how long it was kept Pending in all
        self.connected = False
        self.handshake_error = None
        self.plugged = plugged
        self.stall = stall
        self._reader_task = None
        self._unstall = None  # an asyncio.Event per connection: set to end a hung (stall) box's session
        self.stop_wanted = False
        self.start_wanted = False
        self._drawn_ma = 0
        self._target_since = (0, time.monotonic())
        self._loop = None
        self._thread = None
        self._socket = None
        self._running = False
        self.boot_wanted = None

    # ------------------------------------------------------------- the site side

    def now(self):
        """The box's clock (UTC, off by clock_offset_s)."""
        return _now() + datetime.timedelta(seconds=self.clock_offset_s)

    def limit_a(self, at=None):
        """What the profiles allow now by the box's clock (A), None when none applies."""
        at = at or self.now()
        best = None
        with self.lock:
            for profile in self.profiles:
                schedule = profile["charging_schedule"]
                start = _parse(schedule["start_schedule"]) if schedule.get("start_schedule") else profile["received"]
                elapsed = (at - start).total_seconds()
                duration = schedule.get("duration")
                if elapsed < -5 or (duration is not None and elapsed > duration):
                    continue
                limit = None
                for period in schedule["charging_schedule_period"]:
                    if period["start_period"] <= max(elapsed, 0):
                        limit = period["limit"]
                if limit is None:
                    continue
                if schedule["charging_rate_unit"] == "W":
                    limit = limit / (VOLTAGE_V * self.phases)
                if best is None or profile["stack_level"] > best[0]:
                    best = (profile["stack_level"], limit)
        return None if best is None else best[1]

    def offered_a(self):
        """What the box offers the car now (A): the profile's limit (0 below 6 A) up to max_a; max_a without one."""
        if self.stop_wanted or not (self.ever_accepted or self.pre_boot_transactions):
            return 0
        limit = self.limit_a()
        if limit is None:
            return self.max_a
        return 0 if limit < 6 else min(limit, self.max_a)

    def drawn_current_ma(self):
        """Per phase (mA) what the car draws: the offer, reached `car_delay_s` after it changed."""
        target = 0 if not self.plugged else min(int(self.offered_a() * 1000), self.car_max_ma)
        goal, since = self._target_since
        now = time.monotonic()
        if target != goal:
            self._target_since = (target, now)
            since = now
        if now - since >= self.car_delay_s or target < self._drawn_ma and self.car_delay_s == 0:
            self._drawn_ma = target
        return [self._drawn_ma] * self.phases

    # ------------------------------------------------------------- running

    def start(self):
        self._running = True
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._running = False
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._close)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def disconnect(self):
        """Drop the connection (as a box whose Wi-Fi blinks); it connects again at once."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._close)

    def _close(self):
        if self._unstall is not None:
            self._unstall.set()
        if self._socket is not None:
            asyncio.ensure_future(self._socket.close())

    def _main(self):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._run())
        finally:
            self._loop.close()

    async def _run(self):
        url = "ws://127.0.0.1:%d%s/%s%s" % (self.port, self.path, self.id, self.suffix)
        headers = {}
        if self.password is not None:
            token = base64.b64encode(("%s:%s" % (self.id, self.password)).encode()).decode()
            headers["Authorization"] = "Basic " + token
        while self._running:
            try:
                async with websockets.connect(
                    url,
                    subprotocols=["ocpp1.6"] if self.subprotocol else None,
                    additional_headers=headers,
                    ping_interval=20 if self.pings else None,
                    ping_timeout=20 if self.pings else None,
                    open_timeout=5,
                ) as socket:
                    self._socket = socket
                    self.connections += 1
                    self.connected = True
                    self.handshake_error = None
                    self.registration = None
                    point = _Point(self.id, socket)
                    point.box = self
                    self.boot_wanted = asyncio.Event()
                    tasks = [asyncio.ensure_future(point.start()), asyncio.ensure_future(self._session(point))]
                    self._reader_task = tasks[0]
                    self._unstall = asyncio.Event()
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    if self.stall and tasks[0].cancelled() and not tasks[1].done():
                        # The hung box's reader was stopped on purpose: it stays connected, reading
                        # nothing, until stop() or disconnect() (_close sets _unstall).
                        await asyncio.wait([tasks[1]])
                    for task in tasks:
                        if not task.done():
                            task.cancel()
                    for task in tasks:
                        # Retrieved: a closed connection is how a session ends here. A cancelled task
                        # has no exception to retrieve (exception() would raise CancelledError, a
                        # BaseException that ended this thread).
                        if task.done() and not task.cancelled():
                            task.exception()
            except Exception as error:  # refused, closed, not up yet
                self.handshake_error = repr(error)
            self.connected = False
            self._socket = None
            if self._running:
                await asyncio.sleep(self.reconnect_s)

    async def _send(self, point, request, **options):
        # Every request the box sends, with its registration then: the tests check Pending is obeyed.
        self.sent.append((type(request).__name__, self.registration))
        return await point.call(request, **options)

    async def _register(self, point):
        # BootNotification until Accepted (4.2); nothing else is sent meanwhile.
        self.boot_wanted.clear()
        while True:
            result = await self._send(point, call.BootNotification(charge_point_model="Sim", charge_point_vendor="ChargeGuard"))
            self.registration = result.status
            if result.status == "Accepted":
                self.booted += 1
                self.ever_accepted = True
            if self.stall:
                self._reader_task.cancel()  # never reads again: hung, its socket open
                await self._unstall.wait()
                return False
            if result.status == "Accepted":
                return True
            # Pending or Rejected: again after `interval` (own choice when 0), or at once when triggered.
            since = time.monotonic()
            try:
                await asyncio.wait_for(self.boot_wanted.wait(), result.interval or 30)
            except asyncio.TimeoutError:
                pass
            if result.status == "Pending":
                self.pending_s += time.monotonic() - since
            self.boot_wanted.clear()

    async def _session(self, point):
        if self.status_first:
            # A box that was accepted before and reconnects (it did not reboot): it goes on talking.
            self.registration = "Accepted"
            await self._send(point, call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
            await asyncio.wait_for(self.boot_wanted.wait(), 30)
        if not await self._register(point):
            return
        await self._send(point, call.StatusNotification(connector_id=0, error_code="NoError", status="Available"))
        await self._send(point, call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        start = await self._send(point, call.StartTransaction(connector_id=1, id_tag="CAR1", meter_start=1000, timestamp=self.now().isoformat()))
        transaction = start.transaction_id
        await self._send(point, call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        energy_wh = 1000.0
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(self.meter_interval_s, 1) if self.meter_interval_s else 1)
            if self.stop_wanted and transaction:
                await self._send(point, call.StopTransaction(meter_stop=int(energy_wh), timestamp=self.now().isoformat(), transaction_id=transaction))
                transaction = 0
                await self._send(point, call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing"))
            if self.start_wanted and not transaction:
                self.start_wanted = False
                self.stop_wanted = False
                start = await self._send(point, call.StartTransaction(connector_id=1, id_tag="CAR1", meter_start=int(energy_wh), timestamp=self.now().isoformat()))
                transaction = start.transaction_id
                await self._send(point, call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            now = time.monotonic()
            if now - last < self.meter_interval_s:
                continue
            drawn = self.drawn_current_ma()
            energy_wh += sum(drawn) / 1000 * VOLTAGE_V * (now - last) / 3600
            last = now
            values = call.MeterValues(connector_id=1, transaction_id=transaction or None, meter_value=self._meter_value(drawn, energy_wh))
            await self._send(point, values, skip_schema_validation=self.meter_style == "quirky")

    def _meter_value(self, drawn, energy_wh):
        quirky = self.meter_style == "quirky"
        samples = []
        for index, current in enumerate(drawn):
            phase = "L%d-N" % (index + 1) if quirky else "L%d" % (index + 1)
            samples.append({"value": "%.1f" % (current / 1000), "measurand": "Current.Import", "phase": phase, "unit": "A"})
        power = sum(drawn) / 1000 * VOLTAGE_V
        if quirky:
            # Numbers instead of strings, kW / kWh, L1-N, an empty value,
            # meterValue one object instead of a list, a timestamp without a zone.
            for sample in samples:
                sample["value"] = float(sample["value"])
            samples.append({"value": round(power / 1000, 3), "measurand": "Power.Active.Import", "unit": "kW"})
            samples.append({"value": "%.3f" % (energy_wh / 1000), "unit": "kWh"})
            samples.append({"value": "", "measurand": "SoC"})
            return {"timestamp": self.now().strftime("%Y-%m-%dT%H:%M:%S"), "sampledValue": samples}
        samples.append({"value": "%d" % power, "measurand": "Power.Active.Import", "unit": "W"})
        samples.append({"value": "%d" % energy_wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
        return [{"timestamp": self.now().isoformat(), "sampledValue": samples}]
