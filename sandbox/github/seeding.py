"""The test-facing half of `GitHubSandbox`: seed repositories, workflows, runs, issues and pull requests,
choose how runs turn out, and steer runs that are stuck or held. Every method takes the lock the API takes."""
from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from . import actions, hooks, render
from .model import (Commit, CommitStatus, Issue, JobSpec, Outcome, Repo, Run, Workflow, WorkflowInput, fake_sha,
                    next_id)

if TYPE_CHECKING:
    from .auth import Auth
    from .server import GitHubConfig

_counter = itertools.count(1)


class Seeding:
    config: "GitHubConfig"
    lock: "threading.RLock"
    timing: actions.Timing
    auth: "Auth"
    _repos: dict[str, Repo]
    watcher: hooks.Watcher
    urls: render.Urls

    def repo(self, full_name: str) -> Repo | None: ...   # provided by GitHubSandbox

    def _need(self, full_name: str) -> Repo:
        found = self.repo(full_name)
        if found is None:
            raise KeyError(f"no repository {full_name!r}; seed it with add_repo()")
        return found

    # -- repositories --------------------------------------------------------------------------------

    def add_repo(self, full_name: str, *, default_branch: str = "main", branches: Iterable[str] = (),
                 tags: Iterable[str] = ()) -> Repo:
        """A private repository with one commit on its default branch (and on each of `branches` and `tags`)."""
        owner, _, name = full_name.partition("/")
        if not owner or not name:
            raise ValueError(f"a repository is named owner/name, not {full_name!r}")
        now = time.time()
        repo = Repo(next_id(), owner, name, default_branch, now)
        sha = fake_sha(full_name, "initial", next(_counter))
        repo.commits[sha] = Commit(sha, "Initial commit", now)
        for branch in (default_branch, *branches):
            repo.branches[branch] = sha
        for tag in tags:
            repo.tags[tag] = sha
        with self.lock:
            self._repos[full_name.lower()] = repo
        return repo

    def add_commit(self, full_name: str, *, branch: str | None = None, message: str = "Change") -> str:
        """A new commit on `branch` (default: the default branch); returns its sha."""
        with self.lock:
            repo = self._need(full_name)
            branch = branch or repo.default_branch
            parent = repo.branches.get(branch)
            sha = fake_sha(full_name, branch, message, next(_counter))
            repo.commits[sha] = Commit(sha, message, time.time(), (parent,) if parent else ())
            repo.branches[branch] = sha
            return sha

    def add_tag(self, full_name: str, tag: str, *, sha: str | None = None) -> None:
        with self.lock:
            repo = self._need(full_name)
            repo.tags[tag] = sha or repo.branches[repo.default_branch]

    # -- workflows and runs --------------------------------------------------------------------------

    def add_workflow(self, full_name: str, file: str, *, name: str | None = None,
                     jobs: Iterable[JobSpec | str] = ("build", "test"),
                     inputs: dict[str, WorkflowInput | dict] | None = None, dispatch: bool = True,
                     run_name: str | None = None, outcome: Outcome | None = None) -> Workflow:
        """A workflow file `.github/workflows/<file>`. `inputs` declares its `workflow_dispatch` inputs (a dict
        of `WorkflowInput` or of its fields); `dispatch=False`: it has no workflow_dispatch trigger. `outcome`:
        how its runs end unless `next_outcome` says otherwise (`Outcome(flaky=True, conclusion="failure")`
        makes a flaky workflow)."""
        specs = tuple(j if isinstance(j, JobSpec) else JobSpec(j) for j in jobs)
        declared = None
        if dispatch:
            declared = {k: v if isinstance(v, WorkflowInput) else WorkflowInput(**v) for k, v in (inputs or {}).items()}
        wf = Workflow(next_id(), name or file.rsplit(".", 1)[0], f".github/workflows/{file}", specs, declared,
                      run_name, outcome or Outcome(), created=time.time())
        with self.lock:
            self._need(full_name).workflows[wf.id] = wf
        return wf

    def _workflow(self, full_name: str, workflow: str | int) -> tuple[Repo, Workflow]:
        repo = self._need(full_name)
        wf = repo.workflow(workflow)
        if wf is None:
            raise KeyError(f"{full_name} has no workflow {workflow!r}")
        return repo, wf

    def next_outcome(self, full_name: str, workflow: str | int, outcome: Outcome | None = None,
                     **fields: Any) -> None:
        """How the workflow's next run ends (queued: each call adds one run's outcome)."""
        with self.lock:
            _, wf = self._workflow(full_name, workflow)
            wf.upcoming.append(outcome or Outcome(**fields))

    def set_outcome(self, full_name: str, workflow: str | int, outcome: Outcome | None = None,
                    **fields: Any) -> None:
        """How every later run of the workflow ends (after those `next_outcome` queued)."""
        with self.lock:
            _, wf = self._workflow(full_name, workflow)
            wf.outcome = outcome or Outcome(**fields)

    def start_run(self, repo: Repo, wf: Workflow, *, event: str, branch: str, sha: str, actor: str,
                  inputs: dict, now: float, outcome: Outcome | None = None) -> Run:
        """A new run of `wf` (what a push or a dispatch does)."""
        with self.lock:
            number = 1 + sum(1 for r in repo.runs.values() if r.workflow is wf)
            run = actions.new_run(wf, run_id=next_id(), number=number, event=event, branch=branch, sha=sha,
                                  actor=actor, inputs=inputs, outcome=outcome or wf.next_outcome(),
                                  timing=self.timing, now=now,
                                  commit_message=repo.commits[sha].message if sha in repo.commits else "")
            run.visible_after = now + self.config.dispatch_delay / self.config.speed if event == "workflow_dispatch" \
                else now
            repo.runs[run.id] = run
            return run

    def add_run(self, full_name: str, workflow: str | int, outcome: Outcome | None = None, *, event: str = "push",
                branch: str | None = None, inputs: dict | None = None, actor: str = "octocat", age: float = 0.0,
                **fields: Any) -> Run:
        """A run as a push (or `event`) starts it, `age` real seconds ago (an old enough run has completed).
        `outcome` or its fields (`conclusion="failure", job="test", log=[...]`) choose how it ends; else the
        workflow's next outcome."""
        with self.lock:
            repo, wf = self._workflow(full_name, workflow)
            branch = branch or repo.default_branch
            chosen = outcome or (Outcome(**fields) if fields else None)
            return self.start_run(repo, wf, event=event, branch=branch, sha=repo.branches[branch], actor=actor,
                                  inputs=inputs or {}, now=time.time() - age, outcome=chosen)

    def run(self, run_id: int) -> Run:
        with self.lock:
            for repo in self._repos.values():
                if run_id in repo.runs:
                    return repo.runs[run_id]
        raise KeyError(f"no run {run_id}")

    def runs(self, full_name: str, workflow: str | int | None = None) -> list[Run]:
        """The repository's runs (of one workflow), oldest first."""
        with self.lock:
            repo = self._need(full_name)
            wf = repo.workflow(workflow) if workflow is not None else None
            return sorted((r for r in repo.runs.values() if wf is None or r.workflow is wf), key=lambda r: r.id)

    def run_status(self, run_id: int) -> tuple[str, str | None]:
        """(status, conclusion) of a run's latest attempt, as the API would answer now."""
        with self.lock:
            attempt = self.run(run_id).latest
            status = attempt.status(time.time())
            return status, attempt.conclusion if status == "completed" else None

    def begin(self, run_id: int) -> None:
        """Let a stuck (queued) run start now; it then runs as long as it would have."""
        with self.lock:
            run = self.run(run_id)
            now = time.time()
            actions.release(run, now, start_only=True)
            attempt = run.latest
            if attempt.end is None and not attempt.outcome.hold:
                attempt.end = self.timing.after(now, self.timing.run_seconds)

    def finish(self, run_id: int) -> None:
        """Complete a held, stuck or running run now, with the conclusion its outcome chose."""
        with self.lock:
            actions.release(self.run(run_id), time.time())

    def visible(self, run: Run, now: float, *, by_id: bool = False) -> bool:
        """Dispatched runs show up in lists `dispatch_delay` after the dispatch (at once when asked by id)."""
        return by_id or now >= run.visible_after

    # -- issues, pull requests, statuses -------------------------------------------------------------

    def add_issue(self, full_name: str, title: str, *, body: str | None = None, labels: Iterable[str] = (),
                  user: str = "octocat", state: str = "open") -> Issue:
        from .api_issues import labels_for
        with self.lock:
            repo = self._need(full_name)
            now = time.time()
            issue = Issue(next_id(), repo.next_number(), title, body, user, now, now,
                          labels=labels_for(repo, list(labels)), state=state,
                          closed=now if state == "closed" else None)
            repo.issues[issue.number] = issue
            return issue

    def add_pull_request(self, full_name: str, title: str, *, head: str = "feature", base: str | None = None,
                         body: str | None = None, user: str = "octocat") -> Issue:
        """A pull request (it gets the next issue number and shows in issue lists with `pull_request`)."""
        with self.lock:
            repo = self._need(full_name)
            if head not in repo.branches:
                self.add_commit(full_name, branch=head, message=title)
            issue = self.add_issue(full_name, title, body=body, user=user)
            issue.pull = {"head": head, "base": base or repo.default_branch}
            return issue

    def issues(self, full_name: str) -> list[Issue]:
        """Issues and pull requests, by number."""
        with self.lock:
            return sorted(self._need(full_name).issues.values(), key=lambda i: i.number)

    def add_status(self, full_name: str, sha: str, state: str, context: str = "ci/external") -> None:
        with self.lock:
            repo = self._need(full_name)
            repo.statuses.append(CommitStatus(next_id(), sha, state, context, None, None, "octocat", time.time()))

    # -- webhooks --------------------------------------------------------------------------------------

    def add_hook(self, full_name: str, url: str, *, secret: str | None = None,
                 events: Iterable[str] = ("workflow_run",), active: bool = True) -> hooks.Hook:
        """A repository webhook on a loopback URL. GitHub pings it at once (event `ping`); then each run's
        `requested`, `in_progress` and `completed` are delivered as `workflow_run` events."""
        if not hooks.loopback_url(url):
            raise ValueError(f"webhooks go to loopback URLs only, not {url!r}")
        with self.lock:
            repo = self._need(full_name)
            hook = hooks.Hook(next_id(), url, secret, tuple(events), active)
            repo.hooks[hook.id] = hook
            for run in repo.runs.values():                # history is not announced, only what happens next
                self.watcher.seen(run, run.latest.status(time.time()))
            described = {"type": "Repository", "id": hook.id, "events": list(events), "active": active}
            ping = hooks.new_delivery("ping", None, {"zen": "Keep it logically awesome.", "hook_id": hook.id,
                                                    "hook": described, "repository": render.repository(self.urls, repo),
                                                    "sender": render.user(self.urls, self.config.login)})
            hook.deliveries.append(ping)
        self._send(hook, ping, repo.id, wait=False)
        return hook

    def deliveries(self, full_name: str, hook_id: int | None = None) -> list[hooks.Delivery]:
        """Every delivery to the repository's hooks (or one hook), oldest first."""
        with self.lock:
            repo = self._need(full_name)
            chosen = [h for h in repo.hooks.values() if hook_id is None or h.id == hook_id]
            return sorted((d for h in chosen for d in h.deliveries), key=lambda d: d.id)

    def redeliver(self, full_name: str, hook_id: int, delivery_id: int, *, wait: bool = True) -> hooks.Delivery:
        """Send a delivery again, as GitHub's "Redeliver" does: the same GUID and body, `redelivery: true`."""
        with self.lock:
            repo = self._need(full_name)
            hook = repo.hooks[hook_id]
            original = next(d for d in hook.deliveries if d.id == delivery_id)
            again = hooks.Delivery(next_id(), original.guid, original.event, original.action, original.body,
                                   redelivery=True)
            hook.deliveries.append(again)
        self._send(hook, again, repo.id, wait=wait)
        return again

    def _announce(self, repo: Repo, run: Run, action: str) -> None:
        """Deliver a `workflow_run` event to the repository's hooks that want it (the watcher calls this)."""
        with self.lock:
            wanting = [h for h in repo.hooks.values() if h.wants("workflow_run")]
            if not wanting:
                return
            now = time.time()
            payload = {"action": action, "workflow_run": render.run(self.urls, repo, run, run.latest, now),
                       "workflow": render.workflow(self.urls, repo, run.workflow),
                       "repository": render.repository(self.urls, repo),
                       "sender": render.user(self.urls, run.actor)}
            sends, guid = [], str(uuid.uuid4())
            for hook in wanting:
                delivery = hooks.new_delivery("workflow_run", action, payload, guid)
                hook.deliveries.append(delivery)
                sends.append((hook, delivery))
        for hook, delivery in sends:
            self._send(hook, delivery, repo.id, wait=True)

    def _send(self, hook: hooks.Hook, delivery: hooks.Delivery, repo_id: int, *, wait: bool) -> None:
        if wait:
            hooks.post(hook, delivery, repo_id)
        else:
            threading.Thread(target=hooks.post, args=(hook, delivery, repo_id), daemon=True).start()

    def _hooked_runs(self) -> list[tuple[Repo, Run, str]]:
        """(repo, run, status now) for every run of a repository with hooks (the watcher's look)."""
        now = time.time()
        with self.lock:
            return [(repo, run, run.latest.status(now)) for repo in self._repos.values() if repo.hooks
                    for run in repo.runs.values() if self.visible(run, now)]
