"""Who a request is: a personal access token (`Authorization: token ...` or `Bearer ...`), a GitHub App's JWT
(RS256, signed by the app's private key, `iss` its id, at most 10 minutes long) for the `/app` endpoints, or an
installation access token (`ghs_...`, an hour long) the app exchanged its JWT for. 401s carry GitHub's
messages (`Bad credentials`, `Requires authentication`, the JWT claim messages)."""
from __future__ import annotations

import functools
import secrets
import threading
import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..common.errors import HttpError
from .model import next_id

TOKEN_LIFETIME = 3600.0


@dataclass(frozen=True)
class Identity:
    kind: str                  # "user", "app" or "installation"
    login: str                 # who GitHub says acted (user login, or "<slug>[bot]")
    key: str                   # the rate-limit bucket
    who: str                   # how the rate-limit message names it ("user ID 1", "installation ID 7")
    installation: int | None = None


@dataclass
class App:
    """A GitHub App with one installation on the sandbox's owner; `private_key` is the PEM PyGithub signs with."""

    id: int
    slug: str
    private_key: str
    installation_id: int
    owner: str
    public_key: object = field(repr=False, default=None)
    permissions: dict[str, str] = field(default_factory=lambda: {
        "actions": "write", "checks": "read", "contents": "read", "deployments": "write", "issues": "write",
        "metadata": "read", "pull_requests": "read", "statuses": "read"})


def new_app(slug: str, owner: str, *, app_id: int | None = None, installation_id: int | None = None,
            private_key: str | None = None) -> App:
    """An app with a fresh RSA key, or the one given (PEM) so a restarted stand-in keeps its app."""
    private_key = private_key or _process_key()
    public = serialization.load_pem_private_key(private_key.encode(), password=None).public_key()
    return App(app_id or next_id() % 1_000_000, slug, private_key, installation_id or next_id() % 100_000_000, owner,
               public_key=public)


@functools.lru_cache(maxsize=1)
def _process_key() -> str:
    """One 2048-bit RSA key per process (making one takes a good part of a second on a loaded machine); each
    stand-in's app still has its own id and installation."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def bad_credentials() -> HttpError:
    return HttpError(401, "Unauthorized", "Bad credentials")


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(27).replace("-", "A").replace("_", "B")[:36]


class Auth:
    def __init__(self) -> None:
        self._tokens: dict[str, tuple[Identity, float | None]] = {}    # token -> (who, expires at)
        self.apps: dict[int, App] = {}
        self._lock = threading.Lock()

    def add_token(self, token: str, login: str) -> None:
        with self._lock:
            self._tokens[token] = (Identity("user", login, f"user:{login}", f"user ID {sum(login.encode()) + 1000}"),
                                   None)

    def add_app(self, app: App) -> None:
        with self._lock:
            self.apps[app.id] = app

    def issue_installation_token(self, app: App, lifetime: float = TOKEN_LIFETIME) -> tuple[str, float]:
        token = new_token("ghs_")
        expires = time.time() + lifetime
        who = Identity("installation", f"{app.slug}[bot]", f"installation:{app.installation_id}",
                       f"installation ID {app.installation_id}", app.installation_id)
        with self._lock:
            self._tokens[token] = (who, expires)
        return token, expires

    def expire_tokens(self) -> None:
        """Make every installation token expire now (a client must fetch a new one)."""
        with self._lock:
            for token, (who, expires) in list(self._tokens.items()):
                if expires is not None:
                    self._tokens[token] = (who, 0.0)

    def identify(self, header: str | None) -> Identity:
        """The identity behind an Authorization header (HttpError 401 when there is none or it is bad)."""
        if not header:
            raise HttpError(401, "Unauthorized", "Requires authentication")
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() not in ("token", "bearer") or not credential:
            raise bad_credentials()
        credential = credential.strip()
        if credential.count(".") == 2 and credential.startswith("eyJ"):
            return self._app_identity(credential)
        with self._lock:
            found = self._tokens.get(credential)
        if found is None or (found[1] is not None and found[1] <= time.time()):
            raise bad_credentials()
        return found[0]

    def _app_identity(self, token: str) -> Identity:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise HttpError(401, "Unauthorized", "A JSON web token could not be decoded") from None
        issuer = str(claims.get("iss", ""))
        app = self.apps.get(int(issuer)) if issuer.isdigit() else None
        if app is None:
            raise HttpError(401, "Unauthorized", "'Issuer' claim ('iss') must be an Integer")
        try:
            jwt.decode(token, app.public_key, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
        except jwt.PyJWTError:
            raise HttpError(401, "Unauthorized", "A JSON web token could not be decoded") from None
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + 60:
            raise HttpError(401, "Unauthorized", "'Issued at' claim ('iat') must be an Integer representing the "
                                                 "time that the assertion was issued.")
        if not isinstance(exp, int) or exp <= now:
            raise HttpError(401, "Unauthorized", "'Expiration time' claim ('exp') must be a numeric value "
                                                 "representing the future time at which the assertion expires.")
        if exp - iat > 600 + 60 or exp > now + 600 + 60:
            raise HttpError(401, "Unauthorized", "'Expiration time' claim ('exp') is too far in the future.")
        return Identity("app", app.slug, f"app:{app.id}", f"app ID {app.id}")
