"""Entra ID for the stand-in: the v2.0 endpoints MSAL calls for a confidential client, and ARM's check of the
bearer token it issues.

With instance discovery disabled, MSAL (under azure-identity's ClientSecretCredential) reads
`{authority}/{tenant}/v2.0/.well-known/openid-configuration` and posts the client-credentials grant to the
`token_endpoint` named there. Tokens are JWTs carrying what ARM checks (audience, tenant, expiry), signed
with HS256 under a key only this process knows: clients never verify an access token, ARM here does.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ArmError

TOKEN_LIFETIME = 3599
ARM_AUDIENCES = ("https://management.core.windows.net/", "https://management.core.windows.net",
                 "https://management.azure.com/", "https://management.azure.com")
ARM_SCOPE = "https://management.azure.com/.default"


@dataclass(frozen=True)
class Application:
    """The one service principal the tenant knows (a client id and its secret)."""

    tenant_id: str
    client_id: str
    client_secret: str
    object_id: str


class EntraError(Exception):
    """An OAuth error answer as Entra ID writes it (not ARM's shape)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return {"error": self.error,
                "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
                                     f"Correlation ID: {correlation} Timestamp: {stamp}",
                "error_codes": [self.code], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={self.code}"}


class Identity:
    """The tenant's token service and ARM's token validation, sharing one signing key."""

    def __init__(self, app: Application, base_url: Callable[[], str], *, lifetime: int = TOKEN_LIFETIME,
                 extra_audiences: Callable[[], tuple[str, ...]] = lambda: ()) -> None:
        self.app = app
        self._base_url = base_url
        self._lifetime = lifetime
        self._extra_audiences = extra_audiences
        self._key = secrets.token_bytes(32)
        self.tokens_issued = 0

    # -- the Entra ID endpoints ----------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether `path` is an Entra ID endpoint (`/{tenant}/...`) rather than an ARM path."""
        parts = path.strip("/").split("/")
        return len(parts) >= 2 and parts[0].lower() not in ("subscriptions", "providers", "_sandbox")

    def answer(self, method: str, path: str, form: bytes) -> tuple[int, dict]:
        """(status, JSON body) for an Entra ID request."""
        tenant, rest = path.strip("/").split("/", 1)
        try:
            if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration") \
                    and method == "GET":
                self._known_tenant(tenant)
                return 200, self.openid_configuration(tenant)
            if rest == "discovery/v2.0/keys" and method == "GET":
                return 200, {"keys": []}
            if rest == "oauth2/v2.0/token" and method == "POST":
                return 200, self._token(tenant, urllib.parse.parse_qs(form.decode("utf-8", "replace")))
        except EntraError as exc:
            return exc.status, exc.body()
        return 404, {"error": "not_found", "error_description": f"no Entra ID endpoint {method} /{path.strip('/')}"}

    def openid_configuration(self, tenant: str) -> dict:
        base = f"{self._base_url()}/{tenant}"
        return {"token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "jwks_uri": f"{self._base_url()}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0", "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "http_logout_supported": True, "frontchannel_logout_supported": True,
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
                "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net", "msgraph_host": "graph.microsoft.com"}

    def _known_tenant(self, tenant: str) -> None:
        if tenant.lower() != self.app.tenant_id.lower():
            raise EntraError(400, "invalid_tenant", 90002,
                             f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
                             f"are signing into the correct cloud.")

    def _token(self, tenant: str, form: dict[str, list[str]]) -> dict:
        """The client-credentials grant, checked in the order Entra ID checks it."""
        field = {key: values[-1] for key, values in form.items()}
        self._known_tenant(tenant)
        if field.get("grant_type") != "client_credentials":
            raise EntraError(400, "unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type '{field.get('grant_type', '')}'.")
        if field.get("client_id") != self.app.client_id:
            raise EntraError(400, "unauthorized_client", 700016,
                             f"Application with identifier '{field.get('client_id', '')}' was not found in the "
                             f"directory '{tenant}'.")
        if "client_secret" not in field:
            raise EntraError(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' or "
                             "'client_secret'.")
        if not hmac.compare_digest(field["client_secret"].encode(), self.app.client_secret.encode()):
            raise EntraError(401, "invalid_client", 7000215,
                             f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                             f"client secret value, not the client secret ID, for a secret added to app "
                             f"'{self.app.client_id}'.")
        scopes = field.get("scope", "").split()
        resource = [s for s in scopes if s not in ("openid", "profile", "offline_access")]
        if len(resource) != 1 or not resource[0].endswith("/.default"):
            raise EntraError(400, "invalid_scope", 1002012,
                             f"The provided value for scope {field.get('scope', '')} is not valid. Client credential "
                             f"flows must have a scope value with /.default suffixed to the resource identifier "
                             f"(application ID URI).")
        self.tokens_issued += 1
        return {"token_type": "Bearer", "expires_in": self._lifetime, "ext_expires_in": self._lifetime,
                "access_token": self.issue(_audience(resource[0]))}

    # -- tokens --------------------------------------------------------------------------------------

    def issue(self, audience: str, *, lifetime: int | None = None, tenant: str | None = None) -> str:
        """A v1 access token for `audience` (what Entra ID issues for ARM's `.default` scope)."""
        now = int(time.time())
        tid = tenant or self.app.tenant_id
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{tid}/", "iat": now, "nbf": now,
                  "exp": now + (self._lifetime if lifetime is None else lifetime), "appid": self.app.client_id,
                  "appidacr": "1", "idp": f"https://sts.windows.net/{tid}/", "oid": self.app.object_id,
                  "sub": self.app.object_id, "tid": tid, "uti": secrets.token_urlsafe(16), "ver": "1.0"}
        header = {"typ": "JWT", "alg": "HS256", "kid": "runbooks-sandbox"}
        signing_input = f"{_b64(header)}.{_b64(claims)}"
        return f"{signing_input}.{_b64_bytes(self._sign(signing_input))}"

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()

    def verify(self, authorization: str | None) -> dict:
        """The token's claims, or ArmError 401 exactly as ARM words each failure."""
        if not authorization:
            raise self._unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                                     "missing.", "The authentication failed because of missing 'Authorization' "
                                     "header.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                                     "provided in an invalid format.", "The authentication failed because of "
                                     "invalid 'Authorization' header format.")
        claims = self._decode(token.strip())
        self._check(claims)
        return claims

    def _decode(self, token: str) -> dict:
        invalid = self._unauthorized("InvalidAuthenticationToken", "The access token is invalid.",
                                     "The access token is invalid.")
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(_b64_bytes(self._sign(f"{parts[0]}.{parts[1]}")), parts[2]):
            raise invalid
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            raise invalid from None
        if not isinstance(claims, dict):
            raise invalid
        return claims

    def accepts(self, token: str, audience: str) -> bool:
        """Whether `token` is a live token of this tenant for `audience` (another API's check, e.g. an AAD
        cluster's API server accepting tokens for the AKS server application)."""
        try:
            self._check(self._decode(token), (audience,))
        except ArmError:
            return False
        return True

    def _check(self, claims: dict, audiences: tuple[str, ...] | None = None) -> None:
        now = time.time()
        if claims.get("exp", 0) <= now:
            expiry, current = _arm_time(claims.get("exp", 0)), _arm_time(now)
            raise self._unauthorized("ExpiredAuthenticationToken", f"The access token expiry UTC time '{expiry}' is "
                                     f"earlier than current UTC time '{current}'.", "The access token has expired.")
        allowed = audiences if audiences is not None else ARM_AUDIENCES + self._extra_audiences()
        if claims.get("aud") not in allowed:
            raise self._unauthorized("InvalidAuthenticationTokenAudience",
                                     f"The access token has been obtained for wrong audience or resource "
                                     f"'{claims.get('aud')}'. It should exactly match with one of the allowed "
                                     f"audiences {','.join(repr(a) for a in allowed)}.",
                                     "The access token has an invalid audience.")
        if str(claims.get("tid", "")).lower() != self.app.tenant_id.lower():
            tenant = self.app.tenant_id
            raise self._unauthorized("InvalidAuthenticationTokenTenant",
                                     f"The access token is from the wrong issuer '{claims.get('iss')}'. It must "
                                     f"match the tenant 'https://sts.windows.net/{tenant}/' associated with this "
                                     f"subscription. Please use the authority (URL) "
                                     f"'{self._base_url()}/{tenant}' to get the token.",
                                     "The access token is from the wrong tenant.")

    def _unauthorized(self, code: str, message: str, description: str) -> ArmError:
        challenge = (f'Bearer authorization_uri="{self._base_url()}/{self.app.tenant_id}", error="invalid_token", '
                     f'error_description="{description}"')
        return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})


def _audience(scope: str) -> str:
    """A v1 token's `aud` for a `.default` scope: the resource URI as asked (`https://management.azure.com/`),
    or an application id alone (`6dae42f8-...`, the AKS server application)."""
    resource = scope.removesuffix(".default")
    return resource if "://" in resource else resource.rstrip("/")


def _b64(value: Any) -> str:
    return _b64_bytes(json.dumps(value, separators=(",", ":")).encode())


def _b64_bytes(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _arm_time(epoch: float) -> str:
    """ARM's .NET-style UTC time in messages: `4/2/2024 9:40:13 AM`."""
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return f"{moment.month}/{moment.day}/{moment.year} {moment.strftime('%I:%M:%S %p').lstrip('0')}"
