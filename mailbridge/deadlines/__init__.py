"""Time: the working-day calendar, the SLA policy that gives a case its dates, a case's
clock (pause, resume, extend, reset), what scheduled mail is due (pure) and sending each
item once, with the digests it sends.

calendar, policy and plan are pure and sit low (cases and console count days with them);
clock changes cases; run and digests sit above cases and console, below service.
"""
