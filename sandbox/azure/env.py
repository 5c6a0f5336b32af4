"""The sandbox's service principal as azure-identity's environment variables, for `DefaultAzureCredential`.

`runbooks sandbox` writes the identity under RUNBOOKS_AZURE_* names (DIR/env), not azure-identity's AZURE_*:
a shell that sources the env file must not hand the secret to every Azure tool with the public cloud's
authority and instance discovery on. The runbooks' own processes adopt it (`runbooks` does at start) as
AZURE_* together with AZURE_AUTHORITY_HOST at the stand-in, so DefaultAzureCredential's EnvironmentCredential
finds a client secret credential whose authority is never login.microsoftonline.com; tasks/clients.py turns
instance discovery off for that authority and refuses to send a secret to any other."""
from __future__ import annotations

from typing import Mapping

IDENTITY = {"AZURE_TENANT_ID": "RUNBOOKS_AZURE_TENANT_ID", "AZURE_CLIENT_ID": "RUNBOOKS_AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET": "RUNBOOKS_AZURE_CLIENT_SECRET"}


def azure_identity_env(environ: Mapping[str, str]) -> dict[str, str]:
    """AZURE_* for the sandbox's identity in `environ`, AZURE_AUTHORITY_HOST first; empty when there is none,
    or when AZURE_* already name an identity (a real one is never replaced)."""
    authority = environ.get("RUNBOOKS_AZURE_AUTHORITY")
    if not authority or not all(environ.get(source) for source in IDENTITY.values()):
        return {}
    if any(environ.get(name) for name in (*IDENTITY, "AZURE_AUTHORITY_HOST")):
        return {}
    return {"AZURE_AUTHORITY_HOST": authority, **{name: environ[source] for name, source in IDENTITY.items()}}
