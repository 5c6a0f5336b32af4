"""`runbooks receiver`: the alert receiver (webhooks -> Prefect events), in the foreground.

It needs PREFECT_API_URL and a shared secret, or both kinds:
  RUNBOOKS_RECEIVER_TOKEN     senders send `Authorization: Bearer <token>` (Alertmanager, Grafana,
                              Azure Monitor action groups with a secured webhook)
  RUNBOOKS_RECEIVER_HMAC_KEY  senders sign each request:
                                X-Runbooks-Timestamp: <unix seconds, now>
                                X-Runbooks-Signature: v1=<hex HMAC-SHA256(key, "v1:<timestamp>:<body>")>
                              requests signed more than 300 s ago (or over 60 s ahead) are refused with
                              401, so a captured request cannot be replayed later; e.g.
                                ts=$(date +%s); sig=$(printf 'v1:%s:%s' "$ts" "$body" |
                                  openssl dgst -sha256 -hmac "$KEY" -r | cut -d' ' -f1)
                                curl -H "X-Runbooks-Timestamp: $ts" -H "X-Runbooks-Signature: v1=$sig" ...
Its memory of which alerts started runs (dedupe) and which runs are about to appear (in flight) is the
process's own unless RUNBOOKS_RECEIVER_DATABASE_URL (postgresql://user:password@host:port/db) names a
PostgreSQL: then a restarted receiver, and every replica behind one Service, share it (schema
runbooks_receiver). `runbooks up --database` sets it.
It binds to loopback unless --allow-remote: anyone who can reach it can start runbooks with a valid
secret, so exposing it is a deliberate choice. SIGTERM or Ctrl-C stops it cleanly. Exit code 2 for bad
configuration, before it listens.

GitHub webhooks (`workflow_run`) start CI triage at POST /webhooks/github when RUNBOOKS_GITHUB_WEBHOOK_SECRET
(or the Secret block RUNBOOKS_GITHUB_WEBHOOK_SECRET_BLOCK names) holds the webhook's secret: GitHub's
X-Hub-Signature-256 is checked, only completed failed runs start triage, redeliveries start nothing.

Answers: 202 with each alert's outcome (started, duplicate, cooldown, resolved, ignored); 422 when no
rule wants any alert; 503 + Retry-After when Prefect is unreachable or a run on the same object is still
in flight (the sender retries); 401 unauthenticated or stale; 400 malformed.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading

STATE_ENV = "RUNBOOKS_RECEIVER_DATABASE_URL"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("receiver", help="receive alert webhooks and start runbooks through Prefect events",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9095, help="port (default: 9095; 0 picks a free one)")
    parser.add_argument("--rules", metavar="PATH", help="alert rules (default: $RUNBOOKS_ALERT_RULES or "
                                                        "deployments/alert-rules.yaml)")
    parser.add_argument("--catalog", metavar="PATH", help="catalog (default: $RUNBOOKS_CATALOG or catalog.yaml)")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    parser.set_defaults(func=run_receiver)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_receiver(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.allow_remote:
        return _refuse(f"{args.host} is not a loopback address; pass --allow-remote to listen there "
                       "(and put TLS in front of it)")
    from deployments.receiver import AlertDispatcher, Credentials, PrefectApi, ReceiverServer
    from deployments.rules import RulesError, load_rules
    from tasks.catalog import load_catalog
    from tasks.errors import CatalogError
    from tasks.redaction import register_secret
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

    if not args.verbose:        # httpx logs every event post at INFO; the receiver logs each outcome itself
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        credentials = Credentials.from_env()
    except ValueError as exc:
        return _refuse(str(exc))
    api_url = PREFECT_API_URL.value()
    if not api_url:
        return _refuse("PREFECT_API_URL is not set: the receiver posts events to a Prefect server's API")
    try:
        catalog = load_catalog(args.catalog)
        rules = load_rules(args.rules, catalog=catalog)
    except (CatalogError, RulesError) as exc:
        return _refuse(str(exc))
    for secret in (PREFECT_API_AUTH_STRING.value(), PREFECT_API_KEY.value()):
        if secret:
            register_secret(secret)
    events = PrefectApi(api_url, auth_string=PREFECT_API_AUTH_STRING.value(), api_key=PREFECT_API_KEY.value())
    github = _github_webhooks(catalog, events)
    if isinstance(github, str):
        return _refuse(github)
    try:
        state = shared_state(rules)
    except Exception as exc:             # noqa: BLE001 - any failure here is a configuration error, said once
        return _refuse(str(exc))
    try:
        dispatcher = AlertDispatcher(rules, catalog, events, state=state)
        server = ReceiverServer(dispatcher, credentials, host=args.host, port=args.port, github=github)
    except OSError as exc:
        return _refuse(f"cannot listen on {args.host}:{args.port}: {exc}")
    return _serve(server, events, rule_count=len(rules.rules), api_url=api_url, state=dispatcher.state)


def _github_webhooks(catalog, events):
    """GitHub webhooks at /webhooks/github when RUNBOOKS_GITHUB_WEBHOOK_SECRET (or _BLOCK) is set; else None;
    a message when the secret is unusable."""
    from deployments.github_webhook import GitHubWebhooks, webhook_secret
    from tasks.redaction import register_secret
    try:
        secret = webhook_secret()
        if secret is None:
            return None
        register_secret(secret)
        return GitHubWebhooks(secret, catalog, events)
    except ValueError as exc:
        return str(exc)


def shared_state(rules):
    """PostgresState when RUNBOOKS_RECEIVER_DATABASE_URL is set (its password registered for redaction and
    never printed), else None: the dispatcher keeps its state in memory."""
    import os

    from deployments.dispatch import PENDING_SECONDS, AlertDispatcher
    from deployments.receiver_state import PostgresState
    from runbooks.database import DatabaseUrlError, plain_url, redacted
    from tasks.redaction import register_secret

    url = os.environ.get(STATE_ENV)
    if not url:
        return None
    try:
        url = plain_url(url)
    except DatabaseUrlError as exc:
        raise ValueError(f"{STATE_ENV}: {exc}") from None
    from urllib.parse import urlsplit
    if urlsplit(url).password:
        register_secret(urlsplit(url).password)
    state = PostgresState(url, pending_seconds=PENDING_SECONDS, horizon=AlertDispatcher.horizon(rules))
    print(f"runbooks receiver: shared state in PostgreSQL {redacted(url)}", flush=True)
    return state


def _serve(server, events, *, rule_count: int, api_url: str, state) -> int:
    """Run until SIGTERM/SIGINT; the handler only sets a flag, the main thread does the shutdown."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    print(f"runbooks receiver: listening on {server.url} (POST /alerts/{{alertmanager|azure-monitor|grafana}}, "
          f"GET /healthz); {rule_count} rules; events to {api_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        events.close()
        state.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("runbooks receiver: stopped", flush=True)
    return 0


def _refuse(message: str) -> int:
    print(f"runbooks receiver: {message}", file=sys.stderr)
    return 2
