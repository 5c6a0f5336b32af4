"""Keep secrets out of logs, run logs stored by the Prefect API, reports and notifications.

Nothing in Prefect redacts secrets: a token that reaches `get_run_logger().info(...)` is stored by the
API and shown in the UI. So every value a runbook knows to be secret (a GitHub token, a webhook URL, a
rotated key) is registered here, and `RedactingFilter` rewrites each log record before a handler emits it.

Where the filter goes, and why there: Prefect's `logging.yml` attaches its `APILogHandler` (the handler
that ships run logs to the API) to the "prefect.flow_runs" and "prefect.task_runs" loggers, and the
console handler to the root logger. A filter on a *logger* only sees records created on that logger,
not records propagated from its children, so the filter is added to every *handler* of those loggers
(and to the loggers themselves, for handlers added later by someone else).
"""
from __future__ import annotations

import logging
import threading

MIN_SECRET_LENGTH = 6
MASK = "***"
# Loggers whose handlers may emit run output: root (console), Prefect's run loggers (API handler).
_LOGGER_NAMES = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.extra")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()   # longest first, so a secret containing another is masked whole


def register_secret(value: str) -> None:
    """Remember `value` so that `redact` masks it from now on.

    Values shorter than six characters are ignored: masking "abc" would shred ordinary log text
    while protecting nothing worth protecting. Registering also installs the logging filter, so a
    runbook cannot register a secret and forget to turn redaction on.
    """
    global _secrets
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))
    install_redaction()


def redact(text: str) -> str:
    """Return `text` with every registered secret replaced by `***`."""
    if not isinstance(text, str):
        text = str(text)
    for secret in _secrets:   # a snapshot: the tuple is replaced, never mutated
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _clear_secrets() -> None:
    """Forget every registered secret (tests only)."""
    global _secrets
    with _lock:
        _secrets = ()


class RedactingFilter(logging.Filter):
    """Rewrite a record so that no handler can emit a registered secret.

    The message is formatted first (`msg % args`) and then redacted, so a secret passed as a %-arg
    is caught as well as one in an f-string. The traceback text is pre-rendered and redacted too,
    because exception messages often quote the value that failed. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed %-format: keep the raw parts, still redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def _add_filter(target: logging.Filterer) -> None:
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(_FILTER)


def install_redaction() -> None:
    """Attach `RedactingFilter` to the root and Prefect run loggers and to all their handlers.

    Idempotent: safe to call at every flow start. Handlers that Prefect or pytest attach after this
    call are covered by calling it again (every `register_secret` does).
    """
    for name in _LOGGER_NAMES:
        logger = logging.getLogger(name)
        _add_filter(logger)
        for handler in logger.handlers:
            _add_filter(handler)
