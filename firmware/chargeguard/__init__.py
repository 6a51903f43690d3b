"""ChargeGuard: keeps EV charging inside what the house connection can take."""

VERSION = "0.1.0"
