"""CI triage of a repository with 200 workflow runs of which 20 failed: API calls and wall time of the
`ci-failure-triage` runbook against a plain PyGithub script doing the same work, side by side on identical
GitHub stand-ins. Not a test: prints the numbers and their ratios (runbook / script).

"The same work": find the failed runs of the last day, read each failed job's log for its failing step and
lines, and open one issue per failure signature (4 signatures among the 20 failures). The script is written
as a PyGithub user would: `get_repo`, `get_workflow_runs(status="completed")`, `run.jobs()`,
`job.logs_url()` and a plain GET of the log, `get_issues(labels=...)`, `create_issue`. The runbook also looks
for stuck runs (one more list) and records each step in Prefect (its run, task runs, the report artifact),
which is where its extra wall time goes. Calls are counted from the stand-in's request log (the log blob
GETs included); "rate limit used" is what GitHub would count (a 304 to a conditional request is free).
Usage: python benchmarks/github.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path, and this file would shadow PyGithub's `github`.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import yaml  # noqa: E402
from github import Auth, Github  # noqa: E402

from plans.ci import JobFacts, StepFacts, analyse_log, signature  # noqa: E402
from sandbox.github import GitHubConfig, GitHubSandbox, JobSpec  # noqa: E402

REPO = "acme/payments-api"
RUNS, FAILED, SIGNATURES = 200, 20, 4


def seed() -> GitHubSandbox:
    gh = GitHubSandbox(GitHubConfig(speed=1000.0)).start()
    gh.add_repo(REPO)
    gh.add_workflow(REPO, "ci.yml", name="CI", jobs=["build", JobSpec("test")])
    for i in range(RUNS):
        if i % (RUNS // FAILED) == 0:
            kind = (i // (RUNS // FAILED)) % SIGNATURES
            gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", age=600 - i,
                       log=[f"collected {100 + i} items", f"AssertionError in test_case_{kind}: {i} != 0"])
        else:
            gh.add_run(REPO, "ci.yml", conclusion="success", age=600 - i)
    return gh


def script(gh: GitHubSandbox) -> int:
    """The plain PyGithub way; returns the number of issues it opened."""
    g = Github(base_url=gh.base_url, auth=Auth.Token(gh.config.token), seconds_between_requests=None,
               seconds_between_writes=None)
    repo = g.get_repo(REPO)
    groups: dict[str, list[str]] = {}
    for run in repo.get_workflow_runs(status="completed"):
        if run.conclusion != "failure":
            continue
        for job in run.jobs():
            if job.conclusion != "failure":
                continue
            with urllib.request.urlopen(job.logs_url()) as response:        # noqa: S310 - loopback
                log = response.read().decode()
            facts = JobFacts(id=job.id, name=job.name, status=job.status, conclusion=job.conclusion,
                             steps=[StepFacts(name=s.name, number=s.number, conclusion=s.conclusion) for s in job.steps])
            excerpt = analyse_log(facts, log)
            key = signature(repository=REPO, workflow="ci.yml", job=job.name, step=excerpt.step, lines=excerpt.lines)
            groups.setdefault(key, []).append(f"{run.html_url}\n" + "\n".join(excerpt.lines))
    existing = {m.group(1) for i in repo.get_issues(labels=["ci-failure"])
                for m in [re.search(r"ci-failure:([0-9a-f]+)", i.body or "")] if m}
    opened = 0
    for key, texts in groups.items():
        if key not in existing:
            repo.create_issue(title=f"CI failure {key}", body=f"<!-- runbooks:ci-failure:{key} -->\n" + "\n".join(texts),
                              labels=["ci-failure"])
            opened += 1
    g.close()
    return opened


def runbook(gh: GitHubSandbox, directory: Path) -> int:
    from flows.ci_triage import ci_failure_triage
    env = {"cluster": {"kind": "in-cluster"}, "approval": {"policy": "auto"}, "cooldown_seconds": 0,
           "github": {"base_url": gh.base_url, "seconds_between_writes": 0},
           "services": {"payments-api": {"namespace": "p", "deployment": "payments-api", "github_repo": REPO,
                                         "github": {"ci_workflows": ["ci.yml"]}}}}
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump({"environments": {"bench": env}}))
    os.environ.update(RUNBOOKS_CATALOG=str(path), GITHUB_TOKEN=gh.config.token)
    record = ci_failure_triage(environment="bench", repository=REPO, requested_by="bench")
    assert record.outcome == "succeeded", record.outcome
    return len(record.after["issues"])


def measure(fn, directory: Path) -> tuple[float, int, int, int]:
    gh = seed()
    try:
        since = time.time()
        started = time.perf_counter()
        issues = fn(gh) if fn is script else fn(gh, directory)
        seconds = time.perf_counter() - started
        entries = gh.requests.entries(since)
        used = len([e for e in entries if e.status != 304 and not e.path.startswith("/_blobs")])
        assert issues == SIGNATURES and len([i for i in gh.issues(REPO)]) == SIGNATURES, issues
        return seconds, len(entries), used, len([e for e in entries if e.status == 304])
    finally:
        gh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as tmp:
        warm = seed()
        runbook(warm, Path(tmp))            # warm-up: imports, the first flow run's registration
        warm.stop()
        rows = {"script": [], "runbook": []}
        for _ in range(args.rounds):
            rows["script"].append(measure(script, Path(tmp)))
            rows["runbook"].append(measure(runbook, Path(tmp)))
    median = {k: [statistics.median(r[i] for r in v) for i in range(4)] for k, v in rows.items()}
    print(f"CI triage, {RUNS} runs, {FAILED} failed, {SIGNATURES} signatures; median of {args.rounds} rounds")
    print(f"{'':10} {'wall s':>8} {'requests':>9} {'rate limit used':>16} {'304s':>5}")
    for name, (seconds, calls, used, not_modified) in median.items():
        print(f"{name:10} {seconds:8.2f} {calls:9.0f} {used:16.0f} {not_modified:5.0f}")
    s, r = median["script"], median["runbook"]
    print(f"ratio runbook/script: wall {r[0] / s[0]:.2f}x, requests {r[1] / s[1]:.2f}x, rate limit {r[2] / s[2]:.2f}x")


if __name__ == "__main__":
    main()
