"""`runbooks up --database`: the Prefect server on PostgreSQL instead of its own SQLite file.

Why: under concurrent writes (a run journaling while the receiver posts events and the runner claims runs)
SQLite answers "database is locked", Prefect's client waits 2 s and retries, and that wait is the whole p95
of the alert latency. PostgreSQL takes concurrent writers. The URL is a secret (it carries a password): it
is taken from RUNBOOKS_DATABASE_URL (or --database), handed only to the processes that need it (the server
as PREFECT_API_DATABASE_CONNECTION_URL, the receiver for its shared state), and printed with the password
replaced by ***.
"""
from __future__ import annotations

import asyncio
import urllib.parse

ENV = "RUNBOOKS_DATABASE_URL"
SCHEMES = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
           "postgresql+asyncpg": "postgresql+asyncpg"}


class DatabaseUrlError(ValueError):
    """The URL is not one `runbooks up` can use; the message never contains the password."""


def parse(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise DatabaseUrlError(f"the database must be a PostgreSQL URL (postgresql://user:password@host:port/db), "
                               f"not {parts.scheme or 'no scheme'}://...")
    if not parts.hostname or not parts.path.strip("/"):
        raise DatabaseUrlError(f"the database URL needs a host and a database name: {redacted(url)}")
    return parts


def prefect_url(url: str) -> str:
    """The URL for PREFECT_API_DATABASE_CONNECTION_URL: Prefect's server drives PostgreSQL through asyncpg."""
    parts = parse(url)
    return urllib.parse.urlunsplit(parts._replace(scheme=SCHEMES[parts.scheme]))


def plain_url(url: str) -> str:
    """The libpq form (postgresql://...) that asyncpg.connect takes."""
    parts = parse(url)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql"))


def redacted(url: str) -> str:
    """user:***@host:port/db: safe to print and log."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.password is None:
        return url.strip()
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def unreachable(url: str, timeout: float = 10.0) -> str | None:
    """None when PostgreSQL at `url` accepts a connection, else why not (without the password): checked
    before the Prefect server starts, so a wrong URL is one clear line instead of a server that keeps dying."""
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(plain_url(url), timeout=timeout)
        await connection.close()
    try:
        asyncio.run(probe())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = str(exc).replace(urllib.parse.urlsplit(url).password or "\0", "***")
        return f"cannot connect to {redacted(url)}: {type(exc).__name__}: {message}"
    return None
