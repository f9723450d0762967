"""What coordinators and members see, read-only: the case list's filters, a case's story,
the dashboard, a member's own enquiries, exports and the scrutiny report.

Reads the database, counts days with the calendar and writes nothing, so the status reply,
the digests, the command line and the web console all say the same thing.
"""
