"""Errors a person reads: each carries a message written for them, never a traceback."""


class MailbridgeError(Exception):
    """Base for errors with a message meant for the person running mailbridge."""

    exit_code = 1


class ConfigError(MailbridgeError):
    """The configuration is wrong: the message names the file and the key."""

    exit_code = 2


class UserError(MailbridgeError):
    """Something a coordinator or operator asked for cannot be done as asked."""


class TransportError(MailbridgeError):
    """A mailbox or SMTP server could not be reached or refused us."""


class Unreachable(TransportError):
    """The server could not be reached this time (refused, timed out, dropped, or the token
    endpoint away): trying again later may help, unlike a refused login or an untrusted
    certificate, which need a person."""


class LoginRefused(TransportError):
    """The server refused our credentials (a password changed or expired, an OAuth client
    secret rejected): only a person renewing them helps, so the service waits meanwhile and
    raises an alert (service/alerts.py) rather than ending."""


class DeliveryError(TransportError):
    """Outgoing mail was not handed over (delivery.transports.base says whether to try
    again). The message holds the server's own words, which may run over several lines."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's words, or its type's name when it has none (an
    exception raised with no message, or with only blank ones)."""
    words = str(exc).strip().splitlines()
    return words[0] if words else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """An exception as one log field: its type and the first line of its words."""
    words = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {words[0] if words else ''}".rstrip(": ")
