"""mailbridge: email-first case management for council member enquiries.

Rooms by domain, one subpackage each (store, mail, mailbox, pipeline, cases, deadlines,
delivery, console, service); docs/architecture.md says what each owns, what it may import,
and the invariants the code keeps.
"""

__version__ = "0.1.0"
