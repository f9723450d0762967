"""One module per area of the console; each builds a `Pages` router (web/routing.py)."""
