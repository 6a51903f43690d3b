# Runs first on every boot. Kept empty of logic on purpose: a mistake here
# would stop the board before main.py could report it.
