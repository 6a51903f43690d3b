"""Which driver module serves each meter and charger type a configuration can name.

Adding a device is a new module in meters/ or chargers/ plus one line here;
config.py accepts exactly these types and app.py imports a module only when
the configuration uses it, so the heap holds only the drivers in use.
"""

METER_MODULES = {
    "p1": "chargeguard.meters.p1",
    "modbus": "chargeguard.meters.modbus",
}
CHARGER_MODULES = {"v2c_trydan": "chargeguard.chargers.v2c_trydan"}
