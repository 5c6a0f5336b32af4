"""Guards checked in preflight, for every trigger alike (UI, schedule, alert): freeze windows and the
cooldown after a change. The per-object lock is in `tasks/lock.py`.

Every refusal is a `GuardRefused` raised before the first write, with a message an operator can act on.
Guards key on what is changed (`Target.key`: cluster, namespace, kind, name), never on catalog names, so
two catalog entries for one object cannot bypass each other's cooldown.
"""
from __future__ import annotations

import datetime as dt

from plans.targets import Target

from .catalog import Environment
from .errors import GuardRefused
from .journal import UnreadableJournal, last_change


def check_freeze(environment_name: str, environment: Environment, *, now: dt.datetime,
                 emergency_override: str | None, dry_run: bool) -> str | None:
    """Refuse a change inside a freeze window unless the operator gives a reason to override it.

    A dry run is a rehearsal that changes nothing, so a freeze never refuses it (the note says the freeze
    is on): monthly rehearsals must not page anyone during a year-end freeze.

    Returns:
        None outside every window; inside one, the note to record in the run report.

    Raises:
        GuardRefused: inside a window, not a dry run, and no override (None or blank).
    """
    now = _as_utc(now)
    window = next((w for w in environment.freeze_windows if w.covers(now)), None)
    if window is None:
        return None
    span = f"{_fmt(window.start)}-{_fmt(window.end)} UTC"
    reason = (emergency_override or "").strip()
    if dry_run:
        return f"freeze window {span} ({window.reason}) is in force; a dry run changes nothing, so it went ahead"
    if not reason:
        raise GuardRefused(
            f"environment {environment_name!r} is in a freeze window {span} ({window.reason}); "
            "to change it anyway, pass emergency_override with a reason")
    return f"freeze window {span} ({window.reason}) overridden: {reason}"


def check_cooldown(target: Target, *, cooldown_seconds: int, now: dt.datetime) -> None:
    """Refuse a run too soon after the last change to the same object, so an alert storm or an impatient
    operator cannot stack changes on a service that has not settled yet. A run that changed nothing
    never starts a cooldown. A cooldown of 0 never refuses (and does not read the history).

    Raises:
        GuardRefused: the last change is within `cooldown_seconds` of `now`, or the object's change history
            is unreadable (fail closed: delete that artifact version in the Prefect UI).
    """
    if cooldown_seconds <= 0:
        return
    try:
        last = last_change(target.key)
    except UnreadableJournal as exc:
        raise GuardRefused(f"{exc}; delete that artifact version in the Prefect UI") from exc
    if last is None:
        return
    until = _as_utc(last.at) + dt.timedelta(seconds=cooldown_seconds)
    if _as_utc(now) < until:
        raise GuardRefused(
            f"{target.resource} ({target.label}) was changed by run {last.run} ({last.runbook}) at "
            f"{_as_utc(last.at).isoformat()}; cooldown of {cooldown_seconds} s until {until.isoformat()}")


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Treat naive datetimes as UTC (as `FreezeWindow.covers` does), so comparisons never raise."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _fmt(moment: dt.datetime) -> str:
    return _as_utc(moment).strftime("%Y-%m-%d %H:%M")
