"""The journey of one inbound email: the ordered steps (`steps.STEPS`, read this first),
the processor that runs them batch by batch in one transaction, parsing ahead in worker
processes, threading (which case), routing (what it means: one Decision, pure), applying
the decision through cases/, and quarantine (messages kept aside, retried or accepted).

May import store, mail, mailbox, delivery, deadlines and cases; nothing imports it but
service/ and the command line.
"""
