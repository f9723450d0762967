"""Configuration: one TOML file, validated by typed models.

Every error names the file and the key, because the person reading it is an operator
editing that file. Secrets are never required inline: they come from an environment
variable (`*_env`) or a file (`*_file`) named in the config.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mailbridge.errors import ConfigError, UserError
from mailbridge.probe import loopback

Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret(_Section):
    """Where a secret lives: an environment variable or a file, never the config itself."""

    env: str | None = None
    file: Path | None = None

    def resolve(self, key: str, source: Path | None) -> str:
        where = f"{source or 'config'}: {key}"
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            return value
        if self.file:
            path = self.path(source)
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{where}: cannot read secret file {path}: {exc.strerror}"
                ) from exc
        raise ConfigError(f"{where}: set {key}_env or {key}_file")

    def path(self, source: Path | None) -> Path:
        """The file, relative to the config file that names it."""
        assert self.file is not None
        return self.file if self.file.is_absolute() or not source else source.parent / self.file

    def shown(self, source: Path | None) -> str:
        """Where the secret lives, for an error message."""
        return f"environment variable {self.env}" if self.env else f"file {self.path(source)}"


class OAuthConfig(_Section):
    """XOAUTH2 for IMAP/SMTP: MSAL client credentials (Microsoft 365) or a token command."""

    provider: Literal["msal", "command"] = "msal"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    scope: str = "https://outlook.office365.com/.default"
    authority: str | None = None
    command: list[str] | None = None

    @model_validator(mode="after")
    def _complete(self) -> OAuthConfig:
        if self.provider == "msal":
            missing = [k for k in ("tenant_id", "client_id") if not getattr(self, k)]
            if not (self.client_secret_env or self.client_secret_file):
                missing.append("client_secret_env or client_secret_file")
            if missing:
                raise ValueError(f"provider 'msal' needs {', '.join(missing)}")
        if self.provider == "command" and not self.command:
            raise ValueError('provider \'command\' needs command = ["program", "arg", ...]')
        return self

    @property
    def client_secret(self) -> Secret:
        return Secret(env=self.client_secret_env, file=self.client_secret_file)


MAILBOX_SCHEMES = ("maildir", "imap", "imaps", "imap+starttls")
SMTP_SCHEMES = ("maildir", "smtp", "smtps", "smtp+starttls")
PLAINTEXT_SCHEMES = ("imap", "smtp")  # no TLS at all: a login would cross in clear text


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def shown_url(value: str) -> str:
    """A URL fit for an error message: whatever stands before its `@` (a user name and
    perhaps a password) shows as ***, even when the rest of the URL does not parse."""
    return _USERINFO.sub(r"\1***@", value)


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    shown = shown_url(value)
    if scheme not in schemes:
        raise ValueError(f"'{shown}' must start with one of {', '.join(s + ':' for s in schemes)}")
    if scheme != "maildir":
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError(f"'{shown}' has no host name")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"'{shown}' has a bad port") from exc
    elif not value.split(":", 1)[1]:
        raise ValueError("maildir: needs a path, for example maildir:./data/mailbox")
    return value


class ServerConfig(_Section):
    """A mail server mailbridge logs in to ([mailbox] or [smtp]): its URL and how to log in."""

    SCHEMES: ClassVar[tuple[str, ...]] = ()
    url: str
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    oauth: OAuthConfig | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    tls_ca_file: Path | None = None  # a CA to trust beside the system's (a council's own)
    allow_plaintext_login: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v, cls.SCHEMES)

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()

    @property
    def password(self) -> Secret:
        return Secret(env=self.password_env, file=self.password_file)

    @property
    def login(self) -> str | None:
        return self.username or (unquote(urlsplit(self.url).username or "") or None)

    def plaintext_login_refused(self, section: str) -> str | None:
        """Why a login here is refused: a password or token would cross the network
        unencrypted (imap://, smtp://) to a host that is not this machine."""
        host = urlsplit(self.url).hostname or ""
        if (
            self.scheme not in PLAINTEXT_SCHEMES
            or not self.login
            or self.allow_plaintext_login
            or loopback(host)
        ):
            return None
        secure = {"imap": "imaps:// or imap+starttls://", "smtp": "smtps:// or smtp+starttls://"}
        return (
            f"[{section}] url {self.scheme}://{host} would send the login unencrypted: use "
            f"{secure[self.scheme]}, or set [{section}] allow_plaintext_login = true "
            "if the network between is trusted"
        )


class MailboxConfig(ServerConfig):
    SCHEMES = MAILBOX_SCHEMES
    url: str = "maildir:./data/mailbox"
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 100
    parse_workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = "auto"
    poll_seconds: Annotated[float, Field(gt=0)] = 60.0
    idle: bool = True
    idle_renew_seconds: Annotated[float, Field(gt=0, le=600)] = 540.0
    reconcile_seconds: Annotated[float, Field(gt=0)] = 600.0
    # What one message may cost (docs/security.md, "Limits on one message"): a larger one is
    # quarantined by its header alone; more parts, deeper nesting or a longer parse, too_complex.
    max_message_bytes: Annotated[int, Field(ge=1024)] = 40 * 1024 * 1024
    max_batch_bytes: Annotated[int, Field(ge=1024)] = 100 * 1024 * 1024
    max_parts: Annotated[int, Field(ge=10)] = 500
    max_depth: Annotated[int, Field(ge=2, le=200)] = 40
    parse_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0


class SmtpConfig(ServerConfig):
    SCHEMES = SMTP_SCHEMES
    url: str = "maildir:./data/outbox"
    from_address: Email = "enquiries@example.gov.uk"
    from_name: str = "Member Enquiries"
    rate_limit_per_minute: Annotated[int, Field(ge=0)] = 0
    batch_size: Annotated[int, Field(ge=1)] = 500
    retry_base_seconds: Annotated[float, Field(gt=0)] = 60.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 3600.0
    give_up_after_hours: Annotated[float, Field(gt=0)] = 72.0
    lease_seconds: Annotated[float, Field(gt=0)] = 300.0

    @property
    def domain(self) -> str:
        return str(self.from_address).rsplit("@", 1)[1]


class DatabaseConfig(_Section):
    url: str = "sqlite:///./data/mailbridge.db"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("sqlite:///") or v.startswith("postgresql+psycopg://")):
            raise ValueError(
                f"'{shown_url(v)}' must start with sqlite:/// or postgresql+psycopg://"
            )
        return v


class StorageConfig(_Section):
    data_dir: Path = Path("./data")
    # At most SQLite's largest value (the blob store), 1,000,000,000 bytes.
    max_attachment_bytes: Annotated[int, Field(ge=0, le=1_000_000_000)] = 25 * 1024 * 1024
    max_filename_length: Annotated[int, Field(ge=16, le=255)] = 120


class CasesConfig(_Section):
    reference_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,8}$")] = "MQ"
    max_processing_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    reopen_working_days: Annotated[int, Field(ge=0, le=60)] = 5
    tell_member_on_assignment: bool = True
    officer_attachments_max_bytes: Annotated[int, Field(ge=0)] = 10_000_000


def _clock(value: str) -> str:
    """A time of day written HH:MM (24-hour)."""
    from datetime import time

    try:
        time.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a time of day like 17:00") from exc
    if len(value) != 5:
        raise ValueError(f"'{value}' is not a time of day like 17:00")
    return value


Clock = Annotated[str, AfterValidator(_clock)]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
EscalationTarget = Literal["lead", "additional", "escalation_contact", "directorate_head"]


class EscalationStep(_Section):
    """Who is written to once a case is this many working days past its deadline."""

    after_working_days: Annotated[int, Field(ge=0, le=250)]
    notify: list[EscalationTarget] = ["lead"]


class SlaRule(_Section):
    """Deadlines for one service area, one enquiry type, or one enquiry type in one area."""

    service_area: str | None = None
    enquiry_type: str | None = None
    acknowledge_working_days: Annotated[int, Field(ge=0, le=60)] | None = None
    response_working_days: Annotated[int, Field(ge=1, le=250)] | None = None
    reminder_working_days_before: list[Annotated[int, Field(ge=0, le=60)]] | None = None

    @model_validator(mode="after")
    def _names_something(self) -> SlaRule:
        if not (self.service_area or self.enquiry_type):
            raise ValueError("a rule needs service_area, enquiry_type or both")
        return self


class SlaConfig(_Section):
    """Service levels: the defaults, and rules per service area and enquiry type."""

    # Counted after the day of receipt (see council.office_hours_end), which is not counted.
    acknowledge_working_days: Annotated[int, Field(ge=0, le=60)] = 1
    response_working_days: Annotated[int, Field(ge=1, le=250)] = 10
    # Reminders to the lead officer this many working days before the deadline (0 = the day).
    reminder_working_days_before: list[Annotated[int, Field(ge=0, le=60)]] = [2, 0]
    # After a breach; coordinators are always told as well.
    escalation: list[EscalationStep] = [
        EscalationStep(after_working_days=1, notify=["lead", "escalation_contact"]),
        EscalationStep(after_working_days=5, notify=["directorate_head"]),
    ]
    rules: list[SlaRule] = []


class ReportConfig(_Section):
    """The scrutiny report: the share of enquiries the council aims to answer within target,
    drawn as the line its monthly figures are read against."""

    on_time_target_percent: Annotated[float, Field(gt=0, le=100)] = 90


class ScheduleConfig(_Section):
    """When scheduled mail goes out. Times are the council's (council.timezone)."""

    # Reminders and escalations: on working days, from send_at until send_until.
    send_at: Clock = "09:00"
    send_until: Clock = "17:00"
    # Daily coordinator digest, on working days ("" turns it off).
    coordinator_digest_at: Clock | Literal[""] = "08:30"
    # Weekly digest to each member of their own open enquiries ("" turns it off); on the
    # first working day from member_digest_day.
    member_digest_day: Weekday = "monday"
    member_digest_at: Clock | Literal[""] = "08:00"
    # Weekly summary per directorate to its head and the coordinators ("" turns it off).
    management_summary_day: Weekday = "monday"
    management_summary_at: Clock | Literal[""] = "08:00"
    # How often `mailbridge run` looks for scheduled mail that is due (seconds).
    tick_seconds: Annotated[float, Field(gt=0)] = 60.0


class RetentionConfig(_Section):
    """How long residents' personal data is kept (docs/data-protection.md, "How long it is
    kept"); `mailbridge retention run` and the service's daily run erase what is older."""

    # A completed (or closed) case's content, counted from its latest completion.
    completed_case_months: Annotated[int, Field(ge=1)] = 24
    # Quarantined mail a coordinator did not accept, counted from its arrival.
    quarantine_days: Annotated[int, Field(ge=1)] = 30
    # The copy of each email sent, counted from its sending.
    sent_mail_days: Annotated[int, Field(ge=1)] = 90
    # Mail that belongs to no case and was not quarantined: status requests, automatic
    # replies, bounces (which can quote the mail they return), counted from its arrival.
    caseless_mail_days: Annotated[int, Field(ge=1)] = 30
    # The technical detail (traceback) of mail whose processing failed.
    failure_days: Annotated[int, Field(ge=1)] = 30
    # When the service runs it each day, in the council's time zone ("" turns it off).
    run_at: Clock | Literal[""] = "02:00"


class SatisfactionConfig(_Section):
    # Ask the member to rate the response (reply 1-5) when a case is completed.
    ask: bool = False


class Directorate(_Section):
    name: Annotated[str, Field(min_length=1)]
    head_name: str | None = None
    head_email: Email | None = None


class AutomaticMailConfig(_Section):
    """Limits on mail sent without a person writing it: the guard against mail loops."""

    per_address_per_hour: Annotated[int, Field(ge=1)] = 5
    per_address_per_day: Annotated[int, Field(ge=1)] = 20
    stranger_replies_per_day: Annotated[int, Field(ge=0)] = 1


class LimitsConfig(_Section):
    """What one sender can cause, however their mail is forged: new cases per person (member
    or delegate), and replies to strangers in total (docs/security.md)."""

    new_cases_per_sender_per_hour: Annotated[int, Field(ge=1)] = 20
    new_cases_per_sender_per_day: Annotated[int, Field(ge=1)] = 60
    stranger_replies_total_per_day: Annotated[int, Field(ge=0)] = 50


class CouncilConfig(_Section):
    name: str = "Example County Council"
    timezone: str = "Europe/London"
    holidays_country: str = "GB"
    holidays_subdivision: str = "ENG"
    closure_days: list[str] = []
    # Mail received after this time (or on a day that is not a working day) counts as
    # received on the next working day. "" counts every email on the day it arrived.
    office_hours_end: Clock | Literal[""] = "17:00"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"'{v}' is not a known time zone (for example Europe/London)") from exc
        return v

    @field_validator("closure_days")
    @classmethod
    def _dates(cls, v: list[str]) -> list[str]:
        from datetime import date

        for item in v:
            try:
                date.fromisoformat(item)
            except ValueError as exc:
                raise ValueError(f"'{item}' is not a date like 2026-12-29") from exc
        return v


class ServiceArea(_Section):
    name: Annotated[str, Field(min_length=1)]
    directorate: str | None = None
    keywords: list[str] = []
    # Told when a case of this area breaches its deadline (see [[sla.escalation]]).
    escalation_contact: Email | None = None


class Coordinator(_Section):
    name: Annotated[str, Field(min_length=1)]
    email: Email
    # The server account this coordinator runs `mailbridge` as: the command line then acts,
    # and is audited, as them without `--as` (docs/data-protection.md).
    os_user: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class TemplatesConfig(_Section):
    directory: Path | None = None


class SecurityConfig(_Section):
    signing_key_env: str | None = None
    signing_key_file: Path | None = None
    # Keys signed with before a rotation: still accepted when a reply comes back, never used
    # to sign.
    previous_signing_keys: list[Path] = []
    signed_reply_address: bool = False

    @property
    def signing_key(self) -> Secret:
        return Secret(env=self.signing_key_env, file=self.signing_key_file)


class AttachmentsConfig(_Section):
    """The virus scan every kept attachment goes through, if any (docs/security.md)."""

    # The scanner's argv; "{path}" stands for a file holding the attachment, else the bytes
    # come on standard input. Exit 0 clean, 1 infected, anything else a failed scan.
    scan_command: list[str] = []
    scan_timeout_seconds: Annotated[int, Field(ge=1, le=600)] = 60


Requirement = Literal["dmarc", "aligned", "none"]


class RolePolicy(_Section):
    require: Requirement


class TrustConfig(_Section):
    """Which senders must be proven by the council's gateway (docs/security.md)."""

    authserv_ids: list[Annotated[str, Field(min_length=1)]] = []
    microsoft365: bool = False  # Exchange Online's results and its own AuthAs: Internal count
    microsoft365_auth_sources: list[Annotated[str, Field(min_length=1)]] = []
    report_domains: list[Annotated[str, Field(min_length=1)]] = []  # default: [smtp] from's
    officers: RolePolicy = RolePolicy(require="dmarc")
    coordinators: RolePolicy = RolePolicy(require="dmarc")
    members: RolePolicy = RolePolicy(require="aligned")
    delegates: RolePolicy = RolePolicy(require="aligned")
    delivery_reports: RolePolicy = RolePolicy(require="dmarc")

    def requirements(self) -> dict[str, Requirement]:
        """Keyed by the directory's kinds of person, and "delivery_report"."""
        return {
            "officer": self.officers.require,
            "coordinator": self.coordinators.require,
            "member": self.members.require,
            "delegate": self.delegates.require,
            "delivery_report": self.delivery_reports.require,
        }


class AlertsConfig(_Section):
    """Who hears when mail stops flowing, and after how long (docs/operations.md)."""

    # The operators' addresses; the [[coordinators]] too unless include_coordinators = false.
    # With nobody at all, alerts go to data_dir/health.json and the log only.
    recipients: list[Email] = []
    include_coordinators: bool = True
    # No mail fetched for this long while the service runs: an alert.
    no_fetch_minutes: Annotated[int, Field(ge=1)] = 30
    # The oldest email still waiting in the outbox after this long: an alert.
    outbox_stuck_minutes: Annotated[int, Field(ge=1)] = 30


class SsoConfig(_Section):
    """Single sign-on by OpenID Connect (docs/web.md): Microsoft Entra ID by its tenant, or
    any provider by its issuer URL (discovery)."""

    provider: Literal["entra", "oidc"] = "entra"
    tenant_id: str | None = None  # Entra ID: the directory (tenant) ID
    issuer: str | None = None  # any other provider: its issuer URL
    client_id: Annotated[str, Field(min_length=1)]
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    # The claim matched to the directory's addresses: "email" or "preferred_username" (the
    # Entra ID sign-in name, usually the mail address).
    claim: Literal["email", "preferred_username"] = "email"
    button_label: str = "Single Sign-on Login"

    @property
    def client_secret(self) -> Secret:
        return Secret(env=self.client_secret_env, file=self.client_secret_file)

    @property
    def discovery_url(self) -> str:
        if self.provider == "entra":
            if not self.tenant_id:
                raise ConfigError("[web.sso]: provider entra needs tenant_id")
            return (
                f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"
                "/.well-known/openid-configuration"
            )
        if not self.issuer:
            raise ConfigError("[web.sso]: provider oidc needs issuer")
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


class WebConfig(_Section):
    """The browser console: `mailbridge web` (docs/web.md)."""

    # The address people type, as the reverse proxy serves it: sign-in links and SSO
    # redirects are built from it. Plain http only on loopback.
    base_url: Annotated[str, Field(pattern=r"^https?://[^/?#]+(/[^?#]*)?$")] = (
        "http://127.0.0.1:8080"
    )
    # X-Forwarded-For/-Proto are believed only from these addresses (the reverse proxy).
    trusted_proxies: list[str] = []
    # Signs sign-in links; without one, a key is made once in data_dir/web.key.
    secret_key_env: str | None = None
    secret_key_file: Path | None = None
    idle_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    absolute_hours: Annotated[int, Field(ge=1, le=24 * 7)] = 12
    # "Keep me logged in": how long, and whether coordinators may (off by default: they see
    # every case).
    keep_signed_in_days: Annotated[int, Field(ge=0, le=90)] = 30
    keep_signed_in_coordinators: bool = False
    link_minutes: Annotated[int, Field(ge=1, le=60)] = 15
    # Sign-in links asked for in 15 minutes, per address and per client address.
    links_per_address: Annotated[int, Field(ge=1, le=100)] = 3
    links_per_client: Annotated[int, Field(ge=1, le=1000)] = 10
    # Off: only single sign-on (when [web.sso] is set).
    email_links: bool = True
    page_size: Annotated[int, Field(ge=5, le=200)] = 25
    sso: SsoConfig | None = None

    @property
    def secret_key(self) -> Secret:
        return Secret(env=self.secret_key_env, file=self.secret_key_file)


# What a webhook receiver may hear about (docs/webhooks.md).
WEBHOOK_EVENTS = ("opened", "assigned", "responded", "completed", "overdue")
WebhookEvent = Literal["opened", "assigned", "responded", "completed", "overdue"]


# The engine's execution option naming who listens for what, ((receiver, events), ...):
# set by Services.build, read where case events are recorded (delivery/webhooks.py).
WEBHOOK_LISTENERS = "mailbridge_webhooks"


def webhook_listeners(config: Config) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((w.name, frozenset(w.events)) for w in config.webhooks)


class Webhook(_Section):
    """One system told of case events by a signed POST (docs/webhooks.md); its secret comes
    from the environment or a file, never this file."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=100)]
    url: Annotated[str, Field(pattern=r"^https?://[^/?#\s]+(/[^\s]*)?$", max_length=2000)]
    secret_env: str | None = None
    secret_file: Path | None = None
    events: list[WebhookEvent] = list(WEBHOOK_EVENTS)

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError(f"webhook {self.name}: set one of secret_env or secret_file")
        if not self.events:
            raise ValueError(f"webhook {self.name}: events is empty; leave it out for all")
        return self

    @property
    def secret(self) -> Secret:
        return Secret(env=self.secret_env, file=self.secret_file)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    council: CouncilConfig = CouncilConfig()
    mailbox: MailboxConfig = MailboxConfig()
    smtp: SmtpConfig = SmtpConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    cases: CasesConfig = CasesConfig()
    sla: SlaConfig = SlaConfig()
    report: ReportConfig = ReportConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    satisfaction: SatisfactionConfig = SatisfactionConfig()
    retention: RetentionConfig = RetentionConfig()
    automatic_mail: AutomaticMailConfig = AutomaticMailConfig()
    limits: LimitsConfig = LimitsConfig()
    templates: TemplatesConfig = TemplatesConfig()
    security: SecurityConfig = SecurityConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    trust: TrustConfig = TrustConfig()
    alerts: AlertsConfig = AlertsConfig()
    web: WebConfig = WebConfig()
    logging: LoggingConfig = LoggingConfig()
    service_areas: list[ServiceArea] = []
    directorates: list[Directorate] = []
    coordinators: list[Coordinator] = []
    webhooks: list[Webhook] = []
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, v: list[Webhook]) -> list[Webhook]:
        names = [w.name for w in v]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"webhook names must differ: {', '.join(twice)} is used twice")
        return v

    def resolve_paths(self) -> Config:
        """Make relative paths relative to the config file, so a service may start anywhere."""
        base = self.source.parent if self.source else Path.cwd()

        def fix_url(url: str) -> str:
            scheme, _, rest = url.partition(":")
            if scheme == "maildir" and not Path(rest).is_absolute():
                return f"maildir:{(base / rest).resolve()}"
            return url

        def fix_db(url: str) -> str:
            prefix = "sqlite:///"
            path = url[len(prefix) :]
            if url.startswith(prefix) and path and path != ":memory:" and not path.startswith("/"):
                return prefix + str((base / path).resolve())
            return url

        data_dir = self.storage.data_dir
        if not data_dir.is_absolute():
            data_dir = (base / data_dir).resolve()
        tdir = self.templates.directory
        if tdir is not None and not tdir.is_absolute():
            tdir = (base / tdir).resolve()
        return self.model_copy(
            update={
                "mailbox": self.mailbox.model_copy(update={"url": fix_url(self.mailbox.url)}),
                "smtp": self.smtp.model_copy(update={"url": fix_url(self.smtp.url)}),
                "database": self.database.model_copy(update={"url": fix_db(self.database.url)}),
                "storage": self.storage.model_copy(update={"data_dir": data_dir}),
                "templates": self.templates.model_copy(update={"directory": tdir}),
            }
        )

    def secret(self, section: str, secret: Secret) -> str:
        return secret.resolve(section, self.source)


def without_password(url: str) -> str:
    """A configured URL fit to print or log: a password written into it shows as ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _describe(error: dict, source: Path) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against config.example.toml)"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{source}: {loc}: {msg}"


def load_config(path: Path | str) -> Config:
    """Read and validate a config file; raise ConfigError with one line for a person."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{source}: no such config file (copy config.example.toml and edit it, "
            "or pass --config PATH)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], source)) from exc
    return config.model_copy(update={"source": source.resolve()}).resolve_paths()


def check_secrets(config: Config) -> None:
    """Resolve every secret the service needs and refuse a login in clear text, so either
    stops it at start-up, before the database or a server is touched."""
    for name, section in (("mailbox", config.mailbox), ("smtp", config.smtp)):
        if section.scheme == "maildir":
            continue
        if refused := section.plaintext_login_refused(name):
            raise ConfigError(f"{config.source or 'config'}: {refused}")
        if section.oauth is not None:
            if section.oauth.provider == "msal":
                config.secret(f"[{name}.oauth] client_secret", section.oauth.client_secret)
        elif section.login:
            config.secret(f"[{name}] password", section.password)
    if not signing_keys(config):
        raise ConfigError(
            f"{config.source or 'config'}: [security] has no signing key: run mailbridge keys "
            'generate signing.key and set signing_key_file = "signing.key"'
        )


# An HMAC key as long as its SHA-256 output: a shorter one can be guessed from one of our
# Message-IDs (a 1-byte key was, in 11 tries).
MIN_SIGNING_KEY_BYTES = 32


def signing_keys(config: Config) -> tuple[bytes, ...]:
    """The signing key then the previous ones (still accepted when a reply comes back), or
    none when [security] names no key; each at least MIN_SIGNING_KEY_BYTES long."""
    sec = config.security
    where = config.source or "config"
    if not (sec.signing_key_env or sec.signing_key_file):
        if sec.previous_signing_keys:
            raise ConfigError(
                f"{where}: [security] previous_signing_keys without a signing key: set "
                "signing_key_file to the new key"
            )
        return ()
    named = [("signing_key", sec.signing_key)]
    named += [("previous_signing_keys", Secret(file=file)) for file in sec.previous_signing_keys]
    keys = []
    for key, secret in named:
        value = config.secret(f"[security] {key}", secret).encode()
        if len(value) < MIN_SIGNING_KEY_BYTES:
            raise ConfigError(
                f"{where}: [security] {key}: {secret.shown(config.source)} holds "
                f"{'no key' if not value else f'only {len(value)} bytes'}, at least "
                f"{MIN_SIGNING_KEY_BYTES} are needed: mailbridge keys generate writes one"
            )
        keys.append(value)
    return tuple(keys)


def write_signing_key(path: Path, force: bool = False) -> None:
    """A new signing key: 32 random bytes, written as 64 hexadecimal digits (so it reads
    back as text, from a file or an environment variable) to a file only its owner can read.

    Created with O_EXCL, so an existing key is never overwritten by mistake: replacing it
    breaks the signatures of every email already sent. With `force` the new file takes the
    old one's place in one rename."""
    target = path if not force else path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(
            f"{path} already exists: keep it (replacing it breaks the signatures of mail "
            "already sent; list the old file in [security] previous_signing_keys when you "
            "rotate), or pass --force"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(MIN_SIGNING_KEY_BYTES) + "\n")
        out.flush()
        os.fsync(out.fileno())
    if force:
        os.replace(target, path)
