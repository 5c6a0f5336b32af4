"""What the GitHub stand-in stores: repositories with branches, tags and commits, workflows, runs with their
attempts and jobs, issues (and pull requests, which share their numbers), comments, deployments and commit
statuses. Plain dataclasses; the JSON GitHub answers with is built in `render.py`."""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# A run's and a job's conclusions, as the OpenAPI description enumerates them.
CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required",
               "startup_failure")
FAILED = frozenset({"failure", "cancelled", "timed_out", "startup_failure"})   # what "re-run failed jobs" re-runs
NO_JOBS = frozenset({"startup_failure", "action_required"})                  # runs that never got jobs
DEFAULT_STEPS = ("Set up job", "Run actions/checkout@v4", "Run make test", "Complete job")

_ids = itertools.count(1_000_001)


def next_id() -> int:
    """A GitHub-sized id, unique across every kind in the process (jobs and check runs share theirs)."""
    return next(_ids)


def iso(timestamp: float | None) -> str | None:
    """GitHub's timestamps: UTC, whole seconds, `Z`."""
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(int(timestamp), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_sha(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class JobSpec:
    """A job of a workflow. `skipped`: its `if:` is false, so every run skips it (a skip is not a failure)."""

    name: str
    steps: tuple[str, ...] = DEFAULT_STEPS
    skipped: bool = False


@dataclass(frozen=True)
class Outcome:
    """How a run turns out, chosen by the test. `conclusion` is one of `CONCLUSIONS`; for failure, cancelled and
    timed_out, `job` and `step` name where (default: the last job that runs, its last step before "Complete job")
    and `log` the lines that step prints before the error; `error` replaces the closing `##[error]` line (e.g. a
    lost runner's "The hosted runner: ... lost communication with the server."). `flaky`: only the first attempt
    ends so, re-runs succeed. `stuck`: the run stays queued until cancelled. `hold`: it stays in_progress until
    released."""

    conclusion: str = "success"
    job: str | None = None
    step: str | None = None
    log: tuple[str, ...] = ()
    flaky: bool = False
    stuck: bool = False
    hold: bool = False
    error: str | None = None

    def __post_init__(self) -> None:
        if self.conclusion not in CONCLUSIONS:
            raise ValueError(f"conclusion must be one of {list(CONCLUSIONS)}, got {self.conclusion!r}")
        object.__setattr__(self, "log", tuple(self.log))

    def for_attempt(self, attempt: int) -> "Outcome":
        """A flaky outcome passes from the second attempt on; any other repeats itself."""
        if self.flaky and attempt > 1:
            return Outcome()
        return self


@dataclass
class WorkflowInput:
    """A `workflow_dispatch` input as the workflow file declares it."""

    description: str = ""
    required: bool = False
    default: str | None = None
    type: str = "string"                 # string, choice, boolean, number, environment
    options: tuple[str, ...] = ()


@dataclass
class Workflow:
    id: int
    name: str
    path: str                            # .github/workflows/<file>
    jobs: tuple[JobSpec, ...]
    inputs: dict[str, WorkflowInput] | None   # None: no workflow_dispatch trigger
    run_name: str | None = None          # `run-name:`; `${{ inputs.x }}` is filled in from the dispatch
    outcome: Outcome = field(default_factory=Outcome)
    upcoming: deque[Outcome] = field(default_factory=deque)   # outcomes for the next runs, in order
    state: str = "active"
    created: float = 0.0

    @property
    def file(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def next_outcome(self) -> Outcome:
        return self.upcoming.popleft() if self.upcoming else self.outcome

    def title(self, inputs: dict[str, Any]) -> str:
        if not self.run_name:
            return self.name
        return re.sub(r"\$\{\{\s*(?:github\.event\.)?inputs\.([A-Za-z0-9_-]+)\s*\}\}",
                      lambda m: str(inputs.get(m.group(1), "")), self.run_name)


@dataclass
class Step:
    name: str
    number: int
    conclusion: str                      # when the job completes
    started: float | None = None
    completed: float | None = None


@dataclass
class Job:
    id: int                              # also its check run's id, as on GitHub
    name: str
    attempt: int
    conclusion: str                      # what it ends with (when its attempt completes)
    steps: list[Step]
    log: tuple[str, ...] = ()            # the failing step's lines
    failed_step: str | None = None
    error: str | None = None             # the closing ##[error] line, when not the usual one
    runner: str = "GitHub Actions 2"


@dataclass
class Attempt:
    """One attempt of a run. Times are wall-clock seconds; `start`/`end` None: not (yet) planned."""

    number: int
    created: float
    start: float | None
    end: float | None
    outcome: Outcome
    jobs: list[Job]
    conclusion: str                      # what the run concludes when this attempt completes
    cancelled: bool = False

    def status(self, now: float) -> str:
        if self.end is not None and now >= self.end:
            return "completed"
        if self.start is not None and now >= self.start:
            return "in_progress"
        return "queued"


@dataclass
class Run:
    id: int
    workflow: Workflow
    number: int
    event: str
    branch: str
    sha: str
    title: str
    actor: str
    inputs: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    visible_after: float = 0.0           # when run lists start showing it (a dispatch's delay)

    @property
    def latest(self) -> Attempt:
        return self.attempts[-1]


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Comment:
    id: int
    number: int                          # the issue's
    body: str
    user: str
    created: float
    updated: float


@dataclass
class Issue:
    """An issue or, with `pull` set, a pull request (`{"head": ..., "base": ...}`): they share numbers and the
    issues API lists both."""

    id: int
    number: int
    title: str
    body: str | None
    user: str
    created: float
    updated: float
    labels: list[Label] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    state: str = "open"
    state_reason: str | None = None
    closed: float | None = None
    comments: list[Comment] = field(default_factory=list)
    pull: dict[str, str] | None = None


@dataclass
class DeploymentStatus:
    id: int
    state: str
    description: str
    environment: str
    target_url: str
    log_url: str
    environment_url: str
    user: str
    created: float


@dataclass
class Deployment:
    id: int
    sha: str
    ref: str
    task: str
    payload: Any
    environment: str
    description: str | None
    user: str
    created: float
    transient: bool = False
    production: bool = False
    statuses: list[DeploymentStatus] = field(default_factory=list)


@dataclass
class CommitStatus:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    user: str
    created: float


@dataclass
class Commit:
    sha: str
    message: str
    created: float
    parents: tuple[str, ...] = ()


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    default_branch: str
    created: float
    private: bool = True
    branches: dict[str, str] = field(default_factory=dict)      # name -> sha
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    workflows: dict[int, Workflow] = field(default_factory=dict)
    runs: dict[int, Run] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)      # by number
    labels: dict[str, Label] = field(default_factory=dict)      # by lower-case name
    deployments: dict[int, Deployment] = field(default_factory=dict)
    statuses: list[CommitStatus] = field(default_factory=list)
    hooks: dict[int, Any] = field(default_factory=dict)          # hooks.Hook by id

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def workflow(self, key: str | int) -> Workflow | None:
        """By id or by file name, as the API accepts either."""
        text = str(key)
        if text.isdigit() and int(text) in self.workflows:
            return self.workflows[int(text)]
        return next((w for w in self.workflows.values() if w.file == text), None)

    def resolve(self, ref: str) -> str | None:
        """The sha a branch, tag or sha (or refs/heads/..., refs/tags/...) names."""
        name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        if name in self.branches:
            return self.branches[name]
        if name in self.tags:
            return self.tags[name]
        matches = [sha for sha in self.commits if len(ref) >= 7 and sha.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def next_number(self) -> int:
        return max(self.issues, default=0) + 1
