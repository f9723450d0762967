"""Residents' personal data, handled as UK GDPR expects: the audit of every access
(`audit`, at the base, so every door and read model can record), the retention policy and
legal holds, erasure of a case's content on request or when its time is up, and subject
access exports. May import store, mail, cases and console; the service runs retention daily.
"""
