"""The running service: the daemon's pass (fetch, ingest, move, deliver, tick), the alerts
when mail stops flowing (with health.json) and the readiness checks of `mailbridge check`.
The top of the library: it may import any room.
"""
