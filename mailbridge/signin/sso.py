"""Single sign-on by OpenID Connect (authorization code with PKCE, via Authlib): written for
Microsoft Entra ID, working with any provider that publishes a discovery document.

The provider proves who signed in; the directory says who they are to us. The configured
claim (`email` or Entra's `preferred_username`) must be one of a person's addresses, or
nobody is signed in. Authlib keeps the state, nonce and PKCE verifier in a short-lived
signed cookie of its own for the round trip.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.starlette_client import OAuth

from mailbridge.config import Config

ENTRA_SIGN_IN = "https://login.microsoftonline.com"


class Sso:
    def __init__(self, config: Config) -> None:
        sso = config.web.sso
        assert sso is not None
        self.claim = sso.claim
        self.label = sso.button_label
        self.redirect_uri = f"{config.web.base_url.rstrip('/')}/sign-in/sso/callback"
        self.authorize_origin = ENTRA_SIGN_IN if sso.provider == "entra" else str(sso.issuer or "")
        self.tenant = sso.tenant_id if sso.provider == "entra" else None
        oauth = OAuth()
        oauth.register(
            name="sso",
            server_metadata_url=sso.discovery_url,
            client_id=sso.client_id,
            client_secret=sso.client_secret.resolve("[web.sso] client_secret", config.source),
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
        )
        self.client: Any = oauth.sso

    def address(self, claims: dict[str, Any]) -> str | None:
        """The address the provider vouches for, as the directory keeps addresses; none
        when it says the address is unverified (anyone could have typed it)."""
        value = claims.get(self.claim)
        if self.claim == "email" and claims.get("email_verified") in (False, "false"):
            return None
        if self.tenant is not None and not _member_of(claims, self.tenant):
            return None
        if not isinstance(value, str) or "@" not in value or len(value) > 254:
            return None
        return value.strip().lower()


def _member_of(claims: dict[str, Any], tenant: str) -> bool:
    """An Entra ID account of the council's own tenant. A guest invited from elsewhere signs
    in through the council's tenant too, but its `email` and `preferred_username` are set in
    its home tenant, by whoever runs that: its `idp` names that home, so it is refused."""
    if str(claims.get("tid", "")).lower() != tenant.lower():
        return False
    home = claims.get("idp")
    return home is None or home == claims.get("iss")
