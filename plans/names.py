"""Who is who, when names are typed by hand: the four-eyes rule compares normalised names.

Prefect OSS has no users, so an approver is whatever name they type. Normalising catches the honest
slips and the lazy tricks (`Alice `, `alice.`, `ALICE`, `alice@example.com`, `a.lice`) but cannot prove
identity: anyone who can reach the Prefect API can type any name. The server keeps every answer, which
is the audit trail.
"""
from __future__ import annotations

import re
import unicodedata


def identity(name: str) -> str:
    """The comparable form of a typed name: case, accents, whitespace and punctuation dropped, an email's
    domain dropped. `Alice.` -> `alice`; `alice.smith@example.com` -> `alicesmith`."""
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode().casefold()
    text = text.strip().split("@", 1)[0] if "@" in text.strip() else text
    return re.sub(r"[^a-z0-9]+", "", text)


def same_person(a: str, b: str) -> bool:
    ia, ib = identity(a), identity(b)
    return bool(ia) and ia == ib
