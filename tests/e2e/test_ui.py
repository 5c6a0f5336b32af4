"""An operator's emergency rollback in a real headless Chromium against the whole main job (`runbooks up`).

The operator starts `emergency-rollback` from its deployment's form in the Prefect UI, watches the run pause
at the approval gate, approves it in the UI's resume form as someone else, and reads the report. The Prefect
API and the sandbox then confirm what the pages showed: the run completed with bob's approval, and
payments-api runs the known-good image again.

Selectors are written against Prefect 3.8's default (Vue, "V1") UI: form fields are found by their visible
label text, because the UI's `<label for=...>` does not point at the input it labels. A screenshot of each
step goes to test-artifacts/ui/ (git-ignored); a failing step leaves `failed-<step>.png` and `.html` there.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import httpx
import pytest
from kubernetes import client, config
from playwright.sync_api import expect, sync_playwright

from tests.e2e.stack import ROOT, Stack, start_stack, stop_stack

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "ui"
SHOTS = ("01-form.png", "02-paused.png", "03-approve-form.png", "04-completed.png", "05-artifact.png")
STEP_MS = 60_000                  # every step of the walk-through finishes within a minute, or fails
BAD_IMAGE = "ghcr.io/example/payments-api:1.5.0-crashloop"
GOOD_IMAGE = "ghcr.io/example/payments-api:1.4.2"
REPORT_KEY = "runbook-report-emergency-rollback-production-payments-api"
REASON = "payments-api crash loops after release 1.5.0 (INC-4711)"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} is missing)"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`runbooks up` on free loopback ports, with the sandbox's demo estate; stopped after the module."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop_stack(running)


@pytest.fixture
def page(tmp_path: Path):
    """A fresh headless Chromium (its own profile) that can reach nothing but 127.0.0.1."""
    blocked: list[str] = []

    def loopback_only(route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            browser.route("**/*", loopback_only)
            tab = browser.pages[0] if browser.pages else browser.new_page()
            tab.set_default_timeout(30_000)
            tab.http_errors = []      # responses >= 400, kept for the failure artifacts
            tab.on("response", lambda r: tab.http_errors.append(r) if r.status >= 400 else None)
            yield tab
        finally:
            browser.close()
    if blocked:
        print(f"browser requests to non-loopback addresses were blocked: {sorted(set(blocked))}")


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in [*(ARTIFACTS / name for name in SHOTS), *ARTIFACTS.glob("failed-*"), *ARTIFACTS.glob("retry-*")]:
        old.unlink(missing_ok=True)
    return ARTIFACTS


@contextlib.contextmanager
def step(page, name: str, stack: Stack) -> Iterator[None]:
    """On failure keep what the browser showed (screenshot + HTML) and the stack's logs, then re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"), full_page=True)
        with contextlib.suppress(Exception):
            (ARTIFACTS / f"failed-{name}.html").write_text(page.content())
        with contextlib.suppress(Exception):
            lines = []
            for response in getattr(page, "http_errors", []):
                with contextlib.suppress(Exception):
                    lines.append(f"{response.status} {response.request.method} {response.url}\n"
                                 f"  {response.request.post_data}\n  -> {response.text()[:2000]}")
            (ARTIFACTS / f"failed-{name}-http-errors.txt").write_text("\n".join(lines) or "none")
        with contextlib.suppress(Exception):
            for log in ("serve", "prefect-server"):
                shutil.copy(stack.directory / "logs" / f"{log}.log", ARTIFACTS / f"failed-{name}-{log}.log")
        raise


def labelled(scope, text: str):
    """The form row (`div.p-label`) whose label reads `text`, or `text (Optional)` as the UI marks optional fields."""
    return scope.locator(
        f"xpath=.//label[normalize-space()='{text}' or normalize-space()='{text} (Optional)']"
        "/ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' p-label ')][1]")


def state_badge(page):
    """The state shown in the run page's heading (not the states in its logs or graph)."""
    return page.locator(".page-heading .state-badge").first


def bad_release(stack: Stack) -> client.AppsV1Api:
    """Ship the crash-looping image the way CI does (a strategic merge patch) and wait until it is rolled out
    as a new revision, so the runbook has a revision to roll back to."""
    apps = client.AppsV1Api(config.new_client_from_config(config_file=stack.env()["KUBECONFIG"]))
    assert container_image(apps) == GOOD_IMAGE, "the demo estate should start on the known-good image"
    before = int(revision_of(apps.read_namespaced_deployment("payments-api", "payments")))
    apps.patch_namespaced_deployment("payments-api", "payments", {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": BAD_IMAGE}]}}}})
    deadline = time.monotonic() + STEP_MS / 1000
    while True:
        deployment = apps.read_namespaced_deployment("payments-api", "payments")
        revision = revision_of(deployment)
        if deployment.status.observed_generation == deployment.metadata.generation and int(revision) > before:
            return apps
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bad release was not observed: revision {revision}, status {deployment.status}")
        time.sleep(0.3)


def revision_of(deployment) -> str:
    return (deployment.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "0")


def container_image(apps: client.AppsV1Api) -> str:
    deployment = apps.read_namespaced_deployment("payments-api", "payments")
    return next(c.image for c in deployment.spec.template.spec.containers if c.name == "api")


def choose(page, select_row, option: str) -> None:
    """Pick an option of a prefect-design select. A click does not always open its listbox in headless
    Chromium; ArrowDown on the focused control does, so try both until the listbox shows."""
    control = select_row.locator("button.p-select-button__control")
    listbox = page.get_by_role("listbox")
    for attempt in range(4):
        if attempt % 2 == 0:
            control.click()
        else:
            control.press("ArrowDown")
        with contextlib.suppress(Exception):
            listbox.wait_for(state="visible", timeout=2_000)
        if listbox.is_visible():
            break
    listbox.get_by_role("option", name=option, exact=True).click()
    expect(control).to_have_text(option)


def dismiss_toasts(page) -> None:
    """Close the error toasts a refused submit left, so the next screenshots show the run, not old errors."""
    page.wait_for_timeout(1_000)        # the UI's toasts for the refused submit arrive after its response
    close = page.locator(".p-toast-container").get_by_role("button", name="Close")
    for _ in range(10):
        if close.count() == 0:
            return
        # The UI's two toast containers stack their toasts in one corner, so a real click on one lands on
        # the other; dispatching the click to the close button itself is what a click on it would do.
        with contextlib.suppress(Exception):
            close.first.dispatch_event("click", timeout=2_000)
        page.wait_for_timeout(200)


def submit_until_accepted(page, submit, *, method: str, path: str, what: str, still_retryable=None):
    """Click `submit` and wait for the UI's request to `path`; return its response once the server accepts it.

    Prefect 3.8 on SQLite answers 503 "Service Unavailable" when a write loses a race for the database lock
    ("database is locked"; Prefect marks it retryable and its Python client retries it by itself). The UI
    does not retry: it shows a generic "Oops. Something went wrong." toast and keeps the form. An operator
    clicks Submit again, so the test does, at most five more times a second apart, and warns so the retries
    stay visible in the test summary. Any other error fails at once.
    """
    refusals: list[str] = []
    for attempt in range(1, 7):
        with page.expect_response(lambda r: r.request.method == method and urlparse(r.url).path == path,
                                  timeout=30_000) as answer:
            submit.click()
        response = answer.value
        if response.ok:
            if refusals:
                dismiss_toasts(page)
                warnings.warn(f"{what}: the Prefect UI's request needed {attempt} submits; refused before with "
                              f"{refusals}", stacklevel=2)
            return response
        refusals.append(f"{response.status} {response.text()[:200]}")
        page.screenshot(path=str(ARTIFACTS / f"retry-{what}-{attempt}.png"), full_page=True)
        assert response.status == 503, f"{what}: the Prefect server refused the UI's request: {refusals[-1]}"
        if still_retryable is not None:
            still_retryable()
        page.wait_for_timeout(1_000)
    raise AssertionError(f"{what}: the Prefect server answered 503 to every submit: {refusals}")


def test_operator_rolls_back_from_the_ui_with_approval_in_the_browser(stack: Stack, page, artifacts: Path) -> None:
    """A run started from the deployment's form pauses at the gate, is approved in the UI's form by bob,
    and completes: the report artifact says it succeeded and payments-api runs 1.4.2 again."""
    expect.set_options(timeout=STEP_MS)

    with step(page, "1-bad-release", stack):
        apps = bad_release(stack)
        assert container_image(apps) == BAD_IMAGE

    with step(page, "2-custom-run", stack):
        page.goto(f"{stack.ui_url}/deployments", timeout=STEP_MS)
        deployment_link = page.get_by_role("link", name="emergency-rollback", exact=True).and_(
            page.locator("[href*='/deployments/deployment/']"))
        deployment_link.click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("button", name="Custom run").click()
        expect(page).to_have_url(re.compile(r"/deployments/deployment/[0-9a-f-]{36}/run"))
        form = page.locator("form").filter(has=page.get_by_text("Run Name", exact=True))
        expect(form.get_by_text("Parameters", exact=True)).to_be_visible()
        run_name = labelled(form, "Run Name").locator("input").input_value()
        assert run_name, "the custom run form should propose a run name"
        for field, value in (("service", "payments-api"), ("environment", "production"), ("reason", REASON),
                             ("requested_by", "alice")):
            labelled(form, field).locator("textarea").fill(value)
            expect(labelled(form, field).locator("textarea")).to_have_value(value)
        page.screenshot(path=str(artifacts / "01-form.png"), full_page=True)
        deployment_id = re.search(r"/deployments/deployment/([0-9a-f-]{36})/run", page.url).group(1)
        submit_until_accepted(page, form.get_by_role("button", name="Submit", exact=True), method="POST",
                              path=f"/api/deployments/{deployment_id}/create_flow_run", what="custom-run")
        # The UI goes back to the deployment, whose Runs tab lists the new run by the name the form showed.
        page.get_by_role("link", name=run_name, exact=True).first.click()
        expect(page).to_have_url(re.compile(r"/runs/flow-run/[0-9a-f-]{36}"))
        run_id = re.search(r"/runs/flow-run/([0-9a-f-]{36})", page.url).group(1)

    with step(page, "3-paused", stack):
        expect(state_badge(page)).to_have_text("Paused")
        resume = page.get_by_role("button", name="Resume", exact=True)
        expect(resume).to_be_visible()
        page.screenshot(path=str(artifacts / "02-paused.png"), full_page=True)

    with step(page, "4-approve", stack):
        resume.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Resume Flow Run")).to_be_visible()
        # The gate's description shows the plan; the form's plan_digest comes pre-filled with the same digest.
        heading = dialog.get_by_role("heading", name=re.compile(r"^Plan [0-9a-f]+\s*: emergency-rollback"))
        expect(heading).to_be_visible()
        shown_digest = re.match(r"Plan ([0-9a-f]+)\s*:", heading.inner_text()).group(1)
        digest_field = labelled(dialog, "Plan Digest").locator("textarea")
        expect(digest_field).to_have_value(shown_digest)
        choose(page, labelled(dialog, "Decision"), "approve")
        labelled(dialog, "Approver").locator("textarea").fill("bob")
        labelled(dialog, "Reason").locator("textarea").fill("plan reviewed: back to 1.4.2")
        page.screenshot(path=str(artifacts / "03-approve-form.png"), full_page=True)

        def still_paused() -> None:     # a refused resume rolls back: the run must still wait at the gate
            state = httpx.get(f"{stack.api_url}/flow_runs/{run_id}", timeout=10).json()["state"]["type"]
            assert state == "PAUSED", f"the resume was refused, yet the run is {state}"

        resumed = submit_until_accepted(page, dialog.get_by_role("button", name="Submit", exact=True),
                                        method="POST", path=f"/api/flow_runs/{run_id}/resume", what="approve",
                                        still_retryable=still_paused)
        assert resumed.json()["status"] == "ACCEPT", resumed.json()
        expect(dialog).to_be_hidden()

    with step(page, "5-completed", stack):
        expect(state_badge(page)).to_have_text("Completed")
        page.screenshot(path=str(artifacts / "04-completed.png"), full_page=True)
        page.get_by_role("tablist").get_by_text("Artifacts", exact=True).click()
        card = page.get_by_role("link", name=re.compile(REPORT_KEY))
        expect(card).to_be_visible()
        expect(card).to_contain_text("markdown")
        card.click()
        expect(page).to_have_url(re.compile(r"/artifacts/artifact/"))
        expect(page.get_by_role("heading", name="Runbook: emergency-rollback on production/payments-api: succeeded",
                                exact=True)).to_be_visible()
        expect(page.get_by_role("row", name=re.compile(rf"^approve bob .*{shown_digest}"))).to_be_visible()
        page.screenshot(path=str(artifacts / "05-artifact.png"), full_page=True)

    # What the pages showed, confirmed by the Prefect API and the cluster.
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        run = api.get(f"/flow_runs/{run_id}").json()
        started = api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [run["deployment_id"]]}},
                                                      "flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}}})
        answers = api.post(f"/flow_runs/{run_id}/input/filter", json={"prefix": "paused-approval-", "limit": 50})
        reports = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]},
                                                                     "key": {"any_": [REPORT_KEY]}}}).json()
    assert [r["id"] for r in started.json()] == [run_id], "the form should have started exactly one run"
    assert run["state"]["type"] == "COMPLETED", run["state"]
    typed = {"service": "payments-api", "environment": "production", "requested_by": "alice", "reason": REASON}
    assert {key: run["parameters"].get(key) for key in typed} == typed, run["parameters"]
    responses = [a for a in answers.json() if a["key"].endswith("-response")]
    assert len(responses) == 1, f"exactly one answer should reach the gate: {[a['key'] for a in answers.json()]}"
    answer = json.loads(responses[0]["value"])
    assert (answer["decision"], answer["approver"], answer["plan_digest"]) == ("approve", "bob", shown_digest)
    assert len(reports) == 1 and reports[0]["type"] == "markdown", reports
    report = reports[0]["data"]
    assert "**Outcome**: succeeded" in report, report[:500]
    assert re.search(r"\|\s*approve\s*\|\s*bob\s*\|", report), f"the report's approvals should name bob:\n{report}"
    assert container_image(apps) == GOOD_IMAGE
    status = apps.read_namespaced_deployment("payments-api", "payments").status
    assert status.updated_replicas == status.ready_replicas == status.replicas, status
