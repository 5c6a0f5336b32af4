"""certificate-renewal on the kernel, against the sandbox: its cert-manager, its ingress stand-in (real TLS)
and the Prefect test harness. Proofs on the wire are TLS handshakes, not reads of the Secret.

The runs reach the sandbox as the `runbooks` ServiceAccount under the shipped RBAC (tests/rbac_helpers.py): a
call its ClusterRole does not grant fails the test, and the last test fails on a grant no test used. Seeding
the estate stays on the admin client."""
from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.certificates import certificate_renewal
from plans.certificates import Endpoint
from tasks.errors import ApprovalRejected, VerificationFailed
from tasks.gate_answer import answer_gate
from tasks.tls import presented_certificate
from tests.certificate_estate import NS, managed, seed_estate
from tests.rbac_helpers import assert_every_grant_used, rbac_ledger, runbooks_token  # noqa: F401
from tests.runbook_helpers import answered_at_gate, held_until_watched, write_catalog

RBAC_ROLE = "runbooks-certificate-renewal"              # deployments/kubernetes/rbac/certificate-renewal.yaml
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def use_catalog(sandbox, tmp_path, monkeypatch, runbooks_token):
    """use_catalog(environment): a one-environment catalog whose kubeconfig carries the runbooks account's token."""
    token = runbooks_token(sandbox)

    def use(environment: str) -> None:
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_catalog(sandbox, tmp_path, environment, token=token)))
    return use


@pytest.fixture
def estate(sandbox, use_catalog):
    seeded = seed_estate(sandbox)
    use_catalog("staging")
    return seeded


def served_serial(sandbox, ingress: str, host: str) -> str:
    """What the ingress presents for `host`, found as a client would: from the Ingress's status."""
    balancer = sandbox.get("Ingress", ingress, NS)["status"]["loadBalancer"]["ingress"][0]
    endpoint = Endpoint(ingress=ingress, host=host, address=balancer["ip"], port=balancer["ports"][0]["port"])
    return presented_certificate(endpoint.address, endpoint.port, endpoint.host).serial


def table(environment: str) -> list[dict]:
    import json
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[f"certificate-inventory-{environment}"])))
    newest = max(artifacts, key=lambda a: a.created)
    data = newest.data if isinstance(newest.data, list) else json.loads(newest.data)
    return data


def renew(**params):
    return certificate_renewal(**{"environment": "staging", "requested_by": "alice", "reason": "daily", **params})


def test_dry_run_inventories_every_kind_of_certificate_and_writes_nothing(sandbox, estate):
    since = sandbox.requests.mark()
    record = renew(dry_run=True)
    assert record.outcome == "dry-run"
    assert sandbox.requests.writes(since) == []
    rows = {row["certificate"]: row for row in table("staging")}
    assert {name: row["decision"] for name, row in rows.items()} == {
        "web": "fine", "api": "renew", "legacy-tls": "expired", "partner-tls": "manual", "garbled-tls": "broken",
        "mismatch-tls": "broken", "shop-tls": "broken"}
    assert "tls.crt is not a PEM certificate" in rows["garbled-tls"]["result"]
    assert "tls.key does not match" in rows["mismatch-tls"]["result"]
    assert "shop.example.com" in rows["shop-tls"]["result"] and "old.example.com" in rows["shop-tls"]["result"]
    assert rows["api"]["result"] == "dry run: would renew" and rows["api"]["expires in"] == "10 days"
    assert rows["legacy-tls"]["expires in"] == "expired 10 days ago"
    assert "must act" in rows["partner-tls"]["result"] and rows["partner-tls"]["namespace"] == NS
    assert [c.resource for c in record.plan.changes] == [f"certificate {NS}/api"]
    # Paginated, cluster-wide and filtered: one call per page per kind, whatever the namespaces.
    lists = [r for r in sandbox.requests.entries(since) if r.method == "GET"]
    secret_lists = [r for r in lists if r.path == "/api/v1/secrets"]
    assert len(secret_lists) == 1 and secret_lists[0].query.get("fieldSelector") == "type=kubernetes.io/tls"
    assert not any("/namespaces/" in r.path and r.path.endswith("/secrets") for r in lists)


def test_renews_an_expiring_certificate_and_the_ingress_serves_the_new_serial(sandbox, estate):
    old = format(estate["api"].serial, "X")          # once the ingress controller has caught up with the seeding
    sandbox.wait_for(lambda: sandbox.get("Ingress", "api", NS).get("status", {}).get("loadBalancer", {}).get("ingress")
                     and served_serial(sandbox, "api", "api.example.com") == old)
    # cert-manager takes its time: it issues only once the run's verification has listed the Certificate
    # unissued, so the run has to watch it (the `watch` of its ClusterRole)
    slow = held_until_watched(sandbox, f"/apis/cert-manager.io/v1/namespaces/{NS}/certificates", "metadata.name=api")
    since = sandbox.requests.mark()
    record = renew()
    slow.join(5)
    assert record.outcome == "succeeded", record.next_steps
    new = served_serial(sandbox, "api", "api.example.com")          # a real TLS handshake, as a client makes
    assert new != old
    secret = sandbox.get("Secret", "api-tls", NS)
    assert sandbox.get("Certificate", "api", NS)["status"]["revision"] == 2
    assert any(f"serial {new}" in line for line in record.evidence if line.startswith("PASS served at"))
    writes = sandbox.requests.writes(since)                       # exactly what `cmctl renew` sends (UpdateStatus)
    assert [(r.method, r.path) for r in writes] == [
        ("PUT", f"/apis/cert-manager.io/v1/namespaces/{NS}/certificates/api/status")]
    issuing = [c for c in writes[0].body["status"]["conditions"] if c["type"] == "Issuing"]
    assert [(c["status"], c["reason"], c["message"]) for c in issuing] == [
        ("True", "ManuallyTriggered", "Certificate re-issuance manually triggered")]
    assert writes[0].body["metadata"]["resourceVersion"]         # optimistic concurrency, as cmctl's update
    assert secret["metadata"]["annotations"]["cert-manager.io/certificate-name"] == "api"
    rows = {row["certificate"]: row for row in table("staging")}
    assert rows["api"]["result"].startswith("renewed:") and new in rows["api"]["result"]


def test_a_failing_issuer_fails_the_run_with_its_reason_and_the_old_certificate_stays_served(
        sandbox, use_catalog):
    sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    old = managed(sandbox, "pay", days_left=5)
    cert = sandbox.get("Certificate", "pay", NS)
    cert["spec"]["issuerRef"]["name"] = "broken-ca"
    sandbox.apply_object(cert)
    before = sandbox.get("Secret", "pay-tls", NS)
    use_catalog("staging")
    with pytest.raises(VerificationFailed, match='Issuer "broken-ca" not ready'):
        renew()
    assert sandbox.get("Secret", "pay-tls", NS) == before                       # untouched
    assert served_serial(sandbox, "pay", "pay.example.com") == format(old.serial, "X")   # and still served
    rows = {row["certificate"]: row for row in table("staging")}
    assert rows["pay"]["result"].startswith("FAILED") and "broken-ca" in rows["pay"]["result"]


def test_a_rejected_approval_writes_nothing(sandbox, use_catalog):
    sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    managed(sandbox, "api", days_left=10)
    use_catalog("production")
    since = sandbox.requests.mark()
    box, _ = answered_at_gate(lambda: renew(environment="production"), "certificate-renewal",
                              lambda run: answer_gate(run, approver="bob", decision="reject", reason="not today"))
    assert isinstance(box["error"], ApprovalRejected)           # it reached the gate with a renewal planned
    assert sandbox.requests.writes(since) == []
    assert sandbox.get("Certificate", "api", NS)["status"]["revision"] == 1


def test_the_clusters_own_certificates_are_inventoried_from_a_handshake_and_the_credentials(tmp_path, monkeypatch):
    import datetime as dt

    import yaml

    from sandbox.common import pki
    from tests.certificate_estate import b64
    from tests.conftest import start_sandbox

    sandbox = start_sandbox(tls=True)
    try:
        catalog = write_catalog(sandbox, tmp_path, "staging")
        kubeconfig = tmp_path / "kubeconfig"
        config = yaml.safe_load(kubeconfig.read_text())
        client = pki.issue(pki.generate_ca("clusterCA"), common_name="masterclient", server=False, client=True,
                           duration=dt.timedelta(days=90), not_before=dt.datetime.now(dt.timezone.utc)
                           - dt.timedelta(days=80))
        config["users"][0]["user"].update({"client-certificate-data": b64(client.cert_pem),
                                           "client-key-data": b64(client.key_pem)})
        kubeconfig.write_text(yaml.safe_dump(config))
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(catalog))
        record = renew(dry_run=True)
        rows = {row["certificate"]: row for row in table("staging")}
        assert record.outcome == "no-op"
        assert rows["API server certificate"]["decision"] == "fine"
        assert rows["API server certificate"]["namespace"] == "(cluster)"
        assert rows["client certificate"]["decision"] == "manual"
        assert rows["client certificate"]["expires in"] == "10 days"
        assert "kubeadm certs renew" in rows["client certificate"]["result"]
    finally:
        sandbox.stop()


def test_every_grant_of_the_certificate_renewal_clusterrole_is_used_by_these_tests(request):
    """A grant no test of the runbook uses is one it may not need (last in the module)."""
    assert_every_grant_used(request)
