"""Every change to a case, written once: the records a case is made of (reference, message,
attachments, events), its status transitions, what an inbound email does to it, the
coordinator's actions, assignment, satisfaction, and the people directory.

The pipeline, the command line and the web console all change cases through these
functions. May import store, mail, delivery, deadlines and console (read models); never
the pipeline or service.
"""
