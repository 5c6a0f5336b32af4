"""The change journal: every mutating step is recorded in the Prefect server before it is made.

Why before: a run killed between its write and its report would otherwise leave a change nobody
recorded: no report, and a cooldown that never saw it. So each step is journaled as `intended` (what,
from, to) before the write and again with its result. The records are versions of one keyed artifact
per changed object (`runbook-change-...`), so the Prefect UI's Artifacts page shows every object's
change history, the cooldown guard reads it, the alert receiver reads it, and a crashed run's report
is rebuilt from it.

Appending is a single insert: updating a Variable in place reads then writes, which SQLite refuses while
another writer commits (a 503, then Prefect's client waits 2 s to retry).
"""
from __future__ import annotations

import datetime as dt
import json
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey)
from prefect.client.schemas.sorting import ArtifactSort
from pydantic import BaseModel, TypeAdapter, ValidationError

from plans.plan import Change
from plans.record import Step, StepStatus
from plans.targets import Target, change_record_key

# Statuses after which the object may have changed: they start a cooldown.
CHANGED: frozenset[str] = frozenset({"intended", "made", "undone", "undo-failed"})
HISTORY_VERSIONS = 50
_TARGET = TypeAdapter(Target)


class JournalEntry(BaseModel):
    run: str
    runbook: str
    step: int
    status: StepStatus
    at: dt.datetime
    target: Target
    change: Change
    undo: str | None = None
    no_undo: str | None = None
    detail: str = ""

    def as_step(self) -> Step:
        return Step(change=self.change, status=self.status, undo=self.undo, no_undo=self.no_undo, detail=self.detail)


def journal(entry: JournalEntry, *, flow_run_id: UUID | None, also: list[str] = ()) -> None:
    """Append one entry to the object's change history (linked to the run, when there is one), and to the
    histories of the objects keyed `also` (those the change moves through it)."""
    metadata = {"run": entry.run, "runbook": entry.runbook, "step": str(entry.step), "status": entry.status,
                "at": entry.at.isoformat(), "target": entry.target.model_dump_json(),
                "change": entry.change.model_dump_json(), "undo": entry.undo or "", "no_undo": entry.no_undo or "",
                "detail": entry.detail[:500]}
    data = (f"`{entry.target.label}` ({entry.target.resource}): step {entry.step} **{entry.status}** by run "
            f"`{entry.run}` ({entry.runbook}) at {entry.at.isoformat()}: {entry.change.describe()}")
    with get_client(sync_client=True) as client:
        for key in (entry.target.key, *also):
            client.create_artifact(ArtifactCreate(
                key=change_record_key(key), type="markdown", data=data, metadata_=metadata,
                description=f"Changes to {entry.target.resource} on {entry.target.cluster}, newest first; the "
                            "runbooks' cooldown guard and alert receiver read them.",
                flow_run_id=flow_run_id))


def _entry(metadata: dict | None) -> JournalEntry | None:
    if not metadata:
        return None
    try:
        return JournalEntry(run=metadata["run"], runbook=metadata.get("runbook", ""), step=int(metadata["step"]),
                            status=metadata["status"], at=dt.datetime.fromisoformat(metadata["at"]),
                            target=_TARGET.validate_json(metadata["target"]),
                            change=Change.model_validate_json(metadata["change"]),
                            undo=metadata.get("undo") or None, no_undo=metadata.get("no_undo") or None,
                            detail=metadata.get("detail", ""))
    except (KeyError, ValueError, ValidationError):
        return None


class UnreadableJournal(ValueError):
    """An entry of the change history cannot be read: callers fail closed."""


def last_change(target_key: str) -> JournalEntry | None:
    """The newest step that may have changed the object (its first record: when it was started).

    Each step's newest record decides its status, so a step journaled `intended` and then `failed`
    (nothing written) does not count, while one cut off after `intended` does.

    Raises:
        UnreadableJournal: an entry in the history cannot be parsed (the cooldown fails closed).
    """
    key = change_record_key(target_key)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                          sort=ArtifactSort.CREATED_DESC, limit=HISTORY_VERSIONS)
    latest: dict[tuple[str, int], JournalEntry] = {}
    first: dict[tuple[str, int], JournalEntry] = {}
    for artifact in artifacts:
        entry = _entry(artifact.metadata_)
        if entry is None:
            raise UnreadableJournal(f"change record {artifact.id} under {key} is unreadable ({artifact.metadata_!r})")
        latest.setdefault((entry.run, entry.step), entry)
        first[(entry.run, entry.step)] = entry          # oldest seen last: the step's first record
    counted = [first[k] for k, e in latest.items() if e.status in CHANGED]
    return max(counted, key=lambda e: e.at, default=None)


def steps_of_run(flow_run_id: UUID) -> list[JournalEntry]:
    """Every step a run journaled, each at its newest status, in step order (for a crashed run's report)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                           key=ArtifactFilterKey(like_="runbook-change-%")),
            sort=ArtifactSort.CREATED_DESC, limit=200)
    newest: dict[int, JournalEntry] = {}
    for artifact in artifacts:
        entry = _entry(artifact.metadata_)
        if entry is not None:
            newest.setdefault(entry.step, entry)
    return [newest[n] for n in sorted(newest)]


def summarise(entries: list[JournalEntry]) -> str:
    return json.dumps([{"step": e.step, "status": e.status, "change": e.change.describe()} for e in entries])
