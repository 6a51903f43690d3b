# tools/memprobe.py's breakdown mode (CHARGEGUARD_PROBE=breakdown): what
# each part of the firmware's start-up keeps on the heap. A module of its
# own so that its code is on the heap only in that mode (memprobe.mpy is
# loaded as bytecode, and the heap it measures holds it).
import gc
import sys

# Classes whose instances' construction is reported ("make NAME").
CLASSES = ("Guard", "SlowLayer", "Optimiser", "SiteState", "Commands", "Web", "Hass", "MqttLink", "P1Parser",
           "HttpClient", "BodyBuffer", "EnergyLog", "WifiLink", "Trydan", "V2CTrydan", "ChargerStatus", "_Codec", "ChargerCommand", "SolarRegulator",
           "CapacityBudget", "GridReading")


def breakdown(app_module, say):
    # What each part of the start-up keeps on the heap: every module's first
    # import (through builtins.__import__, which the import statement calls
    # when it is set) and the calls that make the running objects.
    import builtins

    stack = [0]  # bytes children of the current part kept
    real_import = builtins.__import__

    def measured(what, call, *args):
        gc.collect()
        before = gc.mem_alloc()
        stack.append(0)
        try:
            return call(*args)
        finally:
            gc.collect()
            kept = gc.mem_alloc() - before
            inner = stack.pop()
            stack[-1] += kept
            say("part", kept, kept - inner, len(stack) - 1, what)

    def probed_import(name, *args):
        if name in sys.modules or (args and args[3] if len(args) > 3 else 0):
            return real_import(name, *args)
        module = measured("import " + name, real_import, name, *args)
        made = sys.modules.get(name)
        if made is not None and name.startswith("chargeguard."):
            # The firmware's objects of note: what each one's construction keeps.
            for cls_name in CLASSES:
                cls = getattr(made, cls_name, None)
                if cls is not None and type(cls) is type and "__init__" in cls.__dict__:
                    init = cls.__dict__["__init__"]
                    cls.__init__ = wrap_init(init, cls_name)
        if name == "chargeguard.startup" and made is not None:
            # The drivers' construction (startup.py is loaded once, by app.build()).
            for maker in ("make_meter", "make_charger"):
                setattr(made, maker, wrap_fn(getattr(made, maker), maker))
        if name.startswith("chargeguard.net.") and made is not None:
            # The interfaces', the Wi-Fi link's and the portal's objects.
            for maker in ("from_config", "make"):
                if hasattr(made, maker):
                    setattr(made, maker, wrap_fn(getattr(made, maker), name[12:] + "." + maker))
        return module

    def wrap_init(real, label):
        return lambda self, *args: measured("make " + label, real, self, *args)

    def wrap_fn(real, label):
        return lambda *args: measured("call " + label, real, *args)

    builtins.__import__ = probed_import
    real_print = builtins.print
    dumped = []

    def probed_print(*args, **kwargs):
        # The heap's block map (micropython.mem_info(1)) at the first line
        # that names a MemoryError: where the free space is, in what pieces.
        real_print(*args, **kwargs)
        if not dumped and any("MemoryError" in str(arg) for arg in args):
            import micropython

            dumped.append(True)
            micropython.mem_info(1)

    real_build = app_module.build
    # The app's log is print, bound as a default argument: handed in instead.
    app_module.build = lambda platform, log=None: real_build(platform, probed_print)
    for cls, names in ((app_module.App, ("site_state", "command_api")),):
        for name in names:
            def wrap(real, label):
                def call(self, *args):
                    if label == "site_state" and self.state is not None or label == "command_api" and self.api is not None:
                        return real(self, *args)
                    return measured("call App." + label, real, self, *args)
                return call
            setattr(cls, name, wrap(getattr(cls, name), name))
    real_init = app_module.App.__init__
    app_module.App.__init__ = lambda self, *args: measured("call App.__init__", real_init, self, *args)
    real_run = app_module.App.run

    async def later(app):
        # The running firmware's modules and interned names, once it has
        # started everything (its first own collection is at 10 s).
        import asyncio
        import micropython

        # The live heap through the start-up, twice a second (a collection
        # each time: figures of this mode only).
        for _ in range(24):
            await asyncio.sleep_ms(500)
            gc.collect()
            say("live", gc.mem_alloc())
        say("modules", " ".join(sorted(name for name in sys.modules)))
        micropython.qstr_info()

    def probed_run(self, *args):
        import asyncio

        asyncio.create_task(later(self))
        return real_run(self, *args)

    app_module.App.run = probed_run
