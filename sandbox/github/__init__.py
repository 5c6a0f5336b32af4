"""A GitHub REST API stand-in (Actions, issues, deployments, check runs, apps) that real PyGithub talks to
unchanged, as it talks to GitHub Enterprise Server: `Github(base_url=gh.base_url, auth=Auth.Token(token))`,
with `base_url` the API root `http://127.0.0.1:PORT/api/v3`. Shaped after github/rest-api-description.
In tests also pass `seconds_between_requests=None, seconds_between_writes=None`: PyGithub otherwise sleeps
0.25 s before each request and 1 s before each write.

Start it and seed it::

    from sandbox.github import GitHubSandbox, GitHubConfig, Outcome, JobSpec, WorkflowInput

    gh = GitHubSandbox(GitHubConfig(speed=100)).start()       # runs: queued 2 s, running 30 s (simulated)
    gh.add_repo("acme/payments", branches=["release"], tags=["v1.2.0"])
    gh.add_workflow("acme/payments", "ci.yml", name="CI", jobs=["build", JobSpec("test", steps=(...)),
                    JobSpec("deploy", skipped=True)])
    gh.add_workflow("acme/payments", "rollback.yml", run_name="Rollback ${{ inputs.correlation_id }}",
                    inputs={"confirm": WorkflowInput(required=True), "correlation_id": {"required": True}})
    token, url = gh.config.token, gh.base_url              # or gh.credentials().env(): RUNBOOKS_GITHUB_*
    ...
    gh.stop()                                              # also a context manager

Choose how runs end (`Outcome`: conclusion success | failure | cancelled | timed_out | startup_failure (no jobs)
| action_required (no jobs) | skipped | neutral; `job`/`step` where it failed, `log` the lines printed there,
`error` the closing `##[error]` line instead of "Process completed with exit code 1."):

    gh.next_outcome("acme/payments", "ci.yml", conclusion="failure", job="test", log=["AssertionError: 1 != 2"])
    gh.set_outcome("acme/payments", "ci.yml", Outcome(conclusion="failure", flaky=True))  # fails once, re-runs pass
    run = gh.add_run("acme/payments", "ci.yml", conclusion="timed_out", age=3600)   # a push an hour ago: completed
    gh.add_run("acme/payments", "ci.yml", stuck=True, age=7200)        # queued for two hours, until cancelled
    gh.add_run("acme/payments", "rollback.yml", hold=True, step="Run ./rollout")   # in_progress, hanging in
                                                       # that step (the steps before it done), until gh.finish
    gh.begin(run_id)    # a stuck run starts (then runs its course, or stays in progress if held)
    gh.finish(run_id)   # a held, stuck or running run completes now, with its outcome's conclusion
    gh.run_status(run_id) -> (status, conclusion); gh.run(run_id).attempts; gh.runs(repo, workflow=None)

A dispatch (`workflow.create_dispatch(ref, inputs)`) starts a run with the workflow's next outcome; `conclusion`
is null until `status` is completed. `GitHubConfig.dispatch_delay` hides a dispatched run from run lists for a
while (by id it is there at once), as GitHub's are.

Issues and pull requests: `gh.add_issue(repo, title, body=, labels=)`, `gh.add_pull_request(repo, title)`,
`gh.issues(repo)`; commit statuses: `gh.add_status(repo, sha, state, context)`; `gh.add_commit(repo, branch=)`
returns the new sha; `gh.add_tag(repo, tag)`. Deployments check the commit's statuses and check runs (409 unless
they passed, or `required_contexts=[]`).

A GitHub App: `app = gh.app()` (`app.id`, `app.installation_id`, `app.private_key` PEM) for
`Auth.AppAuth(app.id, app.private_key).get_installation_auth(app.installation_id)`;
`gh.auth.expire_tokens()` expires installation tokens; `gh.auth.add_token(token, login)` adds a user.

Rate limits, faults and the request log::

    gh.rate_limits.exhaust(reset_in=1.0, status=403)   # primary: 403/429, X-RateLimit-Remaining 0 until the reset
    gh.rate_limits.secondary(retry_after=1, times=1)   # secondary: 429 with Retry-After
    gh.faults.add(verb="create", path="*/issues", status=502, times=1)   # common faults (verb: get/list/create/...)
    gh.lost_answers.add(verb="create", path="*/issues", status=502, times=1)   # the issue IS created, the
                                                       # client hears a 502 (and PyGithub's retry sends it again)
    gh.requests.entries() / .writes()                  # every request; GET /_sandbox/requests over HTTP

Webhooks: `hook = gh.add_hook(repo, "http://127.0.0.1:PORT/path", secret=..., events=("workflow_run",))` (or
PyGithub's `repo.create_hook`; loopback URLs only) gets a `ping`, then `workflow_run` events (`requested`,
`in_progress`, `completed`) signed with `X-Hub-Signature-256`; `gh.deliveries(repo)`,
`gh.redeliver(repo, hook.id, delivery.id)` (same `X-GitHub-Delivery` GUID, as GitHub's redelivery).

Over HTTP (another process): `/_sandbox/github/{repos,workflows,outcomes,runs,runs/ID/begin,runs/ID/finish,hooks,
hooks/ID/redeliver,lost-answers,rate-limit}`, see admin.py.

Job logs: `GET .../actions/jobs/{id}/logs` answers 302 to a signed `/_blobs/...` URL valid `log_url_seconds`
(default 60), to fetch without the token (one sent with an Authorization header is refused)."""
from .model import JobSpec, Outcome, WorkflowInput
from .server import GitHubConfig, GitHubCredentials, GitHubSandbox

__all__ = ["GitHubConfig", "GitHubCredentials", "GitHubSandbox", "JobSpec", "Outcome", "WorkflowInput"]
