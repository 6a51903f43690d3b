# Build the application from the stored configuration and run it forever,
# unless tools/deploy.py asked for a maintenance boot (preboot.py): then the
# guard is not started and the REPL is left to deploy.
try:
    import preboot
except Exception:
    preboot = None  # missing or damaged: start the guard as before, it comes first
if preboot is None or not preboot.maintenance():
    if preboot is not None:
        preboot.warn_shadowed()
        del preboot
        import sys

        sys.modules.pop("preboot", None)
    from chargeguard import app

    app.main()
