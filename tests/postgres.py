"""A real PostgreSQL server for the tests and the benchmark: Debian's `postgresql` binaries, a temporary data
directory, a free loopback port, password authentication.

Why a real server and not a fake: Prefect's server runs its own migrations and asyncpg queries against it,
and the receiver's shared state relies on PostgreSQL's transactions and advisory locks; nothing short of
PostgreSQL itself proves those. Why run as `postgres` when we are root: PostgreSQL refuses to run as root
(CI runs as root), so the data directory is handed to the `postgres` user that Debian's package creates.
"""
from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "runbooks"
APT_HINT = "apt-get install postgresql (Debian's server binaries under /usr/lib/postgresql/*/bin)"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """`start()`, `url(database)`, `create_database(name, template=)`, `stop()`. Loopback only, no Unix socket."""

    def __init__(self, *, durable: bool = False) -> None:
        self.bin = server_binaries()
        if self.bin is None:
            raise FileNotFoundError(f"PostgreSQL server binaries not found: {APT_HINT}")
        self.durable = durable              # fsync on (benchmarks); off for tests, which need no durability
        self.password = secrets.token_urlsafe(18)
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="runbooks-pg-"))
        self.data = self.directory / "data"
        self._as_user = _postgres_user() if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        kwargs = {"user": self._as_user, "group": self._as_user} if self._as_user else {}
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                              **kwargs)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> "PostgresServer":
        password_file = self.directory / "pw"
        password_file.write_text(self.password + "\n")
        if self._as_user:
            user = pwd.getpwnam(self._as_user)
            for path in (self.directory, password_file):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}", "--auth=scram-sha-256",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        password_file.unlink()
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''",
                   "-c max_connections=200"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "-t", "60",
                  "-o", " ".join(options), "start")
        return self

    def url(self, database: str = "postgres", *, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str) -> None:
        """Run statements outside a transaction (CREATE DATABASE cannot run inside one)."""
        import asyncpg

        async def run() -> None:
            connection = await asyncpg.connect(self.url())
            try:
                for statement in statements:
                    await connection.execute(statement)
            finally:
                await connection.close()
        asyncio.run(run())

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database (a copy of `template` when given: a migrated template copies in milliseconds,
        where migrating from scratch takes seconds); returns its URL."""
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def log(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _postgres_user() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise FileNotFoundError(f"running as root needs the `postgres` user to run the server: {APT_HINT}") from None
    return "postgres"
