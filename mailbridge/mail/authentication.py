"""Who sent it, proven: the council gateway's authentication results, and the policy test.

A From header is a claim. The proof is what the council's own mail gateway wrote when it
accepted the message: its `Authentication-Results` (RFC 8601, read with `authres`), and on
Microsoft 365 the organisation's own `X-MS-Exchange-Organization-AuthAs`/`AuthSource`, which
Exchange strips from mail that comes from outside. Pure over the parsed header fields.

Which Authentication-Results is the gateway's: a gateway adds its field above everything the
message arrived with, so whatever a sender wrote stands below it. For each configured
authserv-id only the topmost field carrying it counts; a field lower down with the same id,
which is where a forger's would stand, is never read. Exchange Online writes its field
without an authserv-id: with `microsoft365` on, the topmost such field counts, by the same
rule. (A gateway must therefore add its field to every message it accepts: Gmail and
Exchange Online do; OpenDKIM needs `AlwaysAddARHeader yes`.)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import authres
from publicsuffixlist import PublicSuffixList

from mailbridge.config import Requirement
from mailbridge.mail.parsing import ParsedEmail

_AUTH_RESULTS = "authentication-results"
_AUTH_AS = "x-ms-exchange-organization-authas"
_AUTH_SOURCE = "x-ms-exchange-organization-authsource"
_COMMENT = re.compile(r"\([^()]*\)")
_NDR_SENDER = re.compile(r"^(mailer-daemon|postmaster|microsoftexchange[0-9a-f]{32})$")


@dataclass(frozen=True, slots=True)
class Gateway:
    """The council's own mail gateway, as `[trust]` names it."""

    authserv_ids: frozenset[str] = frozenset()  # lower-case
    microsoft365: bool = False
    auth_sources: tuple[str, ...] = ()  # lower-case host names or domains of the tenant

    @property
    def configured(self) -> bool:
        return bool(self.authserv_ids) or self.microsoft365


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the gateway proved about the From domain, and where it said so."""

    dmarc: bool = False  # DMARC pass for the From domain
    aligned: bool = False  # DKIM or SPF pass for a domain aligned with the From domain
    internal: bool = False  # Microsoft 365: an authenticated sender of the organisation
    seen: str = "no authentication results from the council's gateway"

    def meets(self, require: Requirement) -> bool:
        if require == "none" or self.internal or self.dmarc:
            return True
        return require == "aligned" and self.aligned


UNPROVEN = Evidence()
# A coordinator accepted the message after checking who wrote it.
VOUCHED = Evidence(True, True, True, "accepted by a coordinator")


def evidence(parsed: ParsedEmail, gateway: Gateway) -> Evidence:
    """The gateway's results for the message's From domain (nothing proven without a From)."""
    if not gateway.configured:
        return Evidence(seen="no mail gateway is named in [trust]")
    if not parsed.from_address or "@" not in parsed.from_address:
        return Evidence()
    domain = parsed.from_address.rsplit("@", 1)[1].lower()
    seen: list[str] = []
    internal = _internal(parsed.header_fields, gateway, seen)
    dmarc = aligned = False
    results = _gateway_results(parsed.header_fields, gateway, seen)
    for method in ("dmarc", "spf"):  # the first result of each counts
        first = next((r for r in results if r.method == method), None)
        if first is None or first.result.lower() != "pass":
            continue
        if method == "dmarc":
            dmarc = _prop(first, "header", "from").lower() == domain
        else:
            aligned |= _aligned(_domain_of(_prop(first, "smtp", "mailfrom")), domain)
    for r in results:  # several signatures are usual: any one aligned will do
        if r.method == "dkim" and r.result.lower() == "pass":
            signer = _prop(r, "header", "d") or _domain_of(_prop(r, "header", "i"))
            aligned |= _aligned(signer.lower(), domain)
    text = "; ".join(seen) if seen else Evidence.seen
    return Evidence(dmarc, aligned or dmarc or internal, internal, text)


def report_doubt(parsed: ParsedEmail, domains: Collection[str]) -> str | None:
    """Why a delivery report is not one the council's own mail system made, or None.

    Believed only in the shape mail systems write (a multipart/report with a delivery-status
    part, or Exchange's non-delivery report) from MAILER-DAEMON, postmaster or Exchange's
    system mailbox at one of `domains` (or a host under one).
    """
    ndr = "x-ms-exchange-message-is-ndr" in parsed.headers
    report = parsed.headers.get("content-type", "").lower().startswith("multipart/report")
    if not (report and parsed.delivery_status) and not ndr:
        return "it is not a multipart/report with a delivery-status part"
    sender = parsed.from_address or ""
    local, _, host = sender.rpartition("@")
    ours = any(host == d or host.endswith("." + d) for d in domains)
    if not (_NDR_SENDER.match(local) and ours):
        shown = ", ".join(sorted(domains)) or "no domain configured"
        return f"it comes from {sender or 'no sender'}, not the mail system of {shown}"
    return None


# --- reading the headers ------------------------------------------------------------------


def _gateway_results(
    fields: Sequence[tuple[str, str]], gateway: Gateway, seen: list[str]
) -> list[authres.AuthenticationResult]:
    """The results in the gateway's fields: for each trusted id, the topmost field with it."""
    trusted = set(gateway.authserv_ids) | ({""} if gateway.microsoft365 else set())
    waiting = set(trusted)
    results: list[authres.AuthenticationResult] = []
    for name, value in fields:
        if not waiting:
            break
        if name != _AUTH_RESULTS or (ident := _authserv_id(value)) not in waiting:
            continue
        waiting.discard(ident)
        found = _parse(value, ident)
        who = ident or "Microsoft 365"
        if found is None:
            seen.append(f"Authentication-Results by {who}: unreadable")
            continue
        results.extend(found)
        said = ", ".join(_said(r) for r in found if r.method in ("dmarc", "dkim", "spf"))
        seen.append(f"Authentication-Results by {who}: {said or 'no DMARC, DKIM or SPF result'}")
    if waiting == trusted:
        names = sorted(gateway.authserv_ids) + (["Microsoft 365"] if gateway.microsoft365 else [])
        seen.append(f"no Authentication-Results by {' or '.join(names)}")
    return results


def _authserv_id(value: str) -> str:
    """The authserv-id, lower-case; "" for Exchange Online's field, which has none."""
    head = _COMMENT.sub(" ", value.split(";", 1)[0]).strip()
    if "=" in head:  # `spf=pass (sender IP is ...) smtp.mailfrom=...`: a result, not an id
        return ""
    return head.split()[0].lower() if head else ""


def _parse(value: str, ident: str) -> list[authres.AuthenticationResult] | None:
    text = value if ident else f"microsoft365; {value}"
    try:
        return list(authres.AuthenticationResultsHeader.parse_value(text).results)
    except Exception:  # noqa: BLE001 - authres raises its own SyntaxError and others
        return None


def _said(result: authres.AuthenticationResult) -> str:
    shown = {"dmarc": ("header", "from"), "spf": ("smtp", "mailfrom"), "dkim": ("header", "d")}
    ptype, name = shown[result.method]
    value = _prop(result, ptype, name)
    if not value and result.method == "dkim":
        ptype, name = "header", "i"
        value = _prop(result, ptype, name)
    return f"{result.method}={result.result}" + (f" {ptype}.{name}={value}" if value else "")


def _prop(result: authres.AuthenticationResult, ptype: str, name: str) -> str:
    for p in result.properties:
        if p.type == ptype and p.name == name and p.value:
            return str(p.value).strip()
    return ""


def _internal(fields: Sequence[tuple[str, str]], gateway: Gateway, seen: list[str]) -> bool:
    """Microsoft 365: the organisation authenticated the sender itself."""
    if not gateway.microsoft365:
        return False
    auth_as = next((v for n, v in fields if n == _AUTH_AS), "")
    source = next((v for n, v in fields if n == _AUTH_SOURCE), "").lower().rstrip(".")
    if not auth_as:
        return False
    seen.append(f"X-MS-Exchange-Organization-AuthAs: {auth_as} (AuthSource {source or 'none'})")
    tenant = any(source == s or source.endswith("." + s) for s in gateway.auth_sources)
    return auth_as.strip().lower() == "internal" and tenant


def _domain_of(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip().lower()


@functools.cache
def _suffixes() -> PublicSuffixList:
    """The list the package ships, read once and only when a result needs it (0.12 s)."""
    return PublicSuffixList()


def _aligned(signer: str, domain: str) -> bool:
    """Relaxed alignment (RFC 7489): the same organisational domain."""
    if not signer:
        return False
    if signer == domain:
        return True
    psl = _suffixes()
    org = psl.privatesuffix(domain)
    return org is not None and org == psl.privatesuffix(signer)
