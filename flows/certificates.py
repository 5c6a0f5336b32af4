"""Runbook: Certificate Renewal. Find every TLS certificate before it expires, renew it, prove the new one is served.

Purpose: expired certificates are among the most common self-inflicted outages. Inventory every TLS
certificate of an environment (TLS Secrets and cert-manager Certificates), decide for each whether it is
fine, due for renewal, expired, broken or beyond the runbook's reach, renew the cert-manager Certificates
that are due, and prove on the wire that the renewed certificate is the one served.
Approval required: the environment's policy (none in staging; the on-call lead in production). A run that
would renew nothing stops before the gate. A cluster certificate rotation always needs one approver at least,
even where the environment auto-approves.
Estimated time: 15 to 30 minutes by hand; about a minute as a runbook, plus cert-manager's issuance time.
Prerequisites: the environment is in the catalog; its cluster answers; cert-manager manages the certificates
to renew (a Secret no Certificate manages is reported to the catalog's `certificates.owner`, never changed);
no change freeze is in force (or an emergency override with a reason is given); no other run is renewing
the same certificates.
Blast radius: the cert-manager Certificates of the environment's namespaces on one cluster (on a cluster
shared by several environments, each owns its services' namespaces; the production one owns the rest).
Each renewal replaces one Secret's key pair; the Ingresses serving it pick the new one up.
Procedure: preflight (cluster-wide, paginated lists of TLS Secrets with a field selector, cert-manager
Certificates and Ingresses; the cluster's own certificates: the API server's, read by a TLS handshake, and
the client certificate in the run's credentials; each certificate parsed: subject, SANs, issuer, serial,
notAfter, key type and size, chain order), decide per certificate (fine; renew inside the threshold,
`certificates.renew_within_days` in the catalog, 30 by default; a person must act on a Secret no Certificate manages; expired is urgent;
broken: malformed PEM, a key that does not match, SANs that do not cover the hosts serving it; the cluster's
own certificates are reported with how to renew them: on AKS, certificate rotation, which is disruptive and
done only in a run asked for it, below), notify the
owner of everything the runbook cannot renew, plan (a dry run stops here with zero writes), approval gate,
then for each Certificate due: set its Issuing condition to True as `cmctl renew` does.
AKS cluster certificate rotation (`rotate_cluster_certificates`): a separate, disruptive run that changes nothing
else: AKS rotates every cluster certificate (API server, kubelets, client credentials, CAs), which takes up to
30 minutes with the API server unavailable meanwhile (`az aks rotate-certs`). Fetch new credentials afterwards.
Verification: watching each Certificate until cert-manager issues a new revision (or the issuance fails
with the issuer's reason); the Secret holds a new serial whose notAfter is beyond the threshold; a real TLS
handshake to every endpoint that serves the Secret (each Ingress's load balancer address and port, with
its host as SNI) presents that new serial. A cluster certificate rotation: its operation ends Succeeded and a
TLS handshake with the API server presents a serial other than the one preflight read.
Rollback: a renewal has no undo: the old Secret is never deleted or emptied first (cert-manager replaces
its key pair only once a new certificate is signed), so a failed issuance leaves the previous certificate
in place and served. A renewal that does not verify fails the run, and the report gives the previous
certificate's details (serial, SANs, issuer, expiry) and what each endpoint presents now.
A cluster certificate rotation has no undo either: AKS keeps no previous certificates to put back.
Post-incident: the run report, a table artifact `certificate-inventory-<environment>` (certificate,
namespace, cluster, expires in, action, result) beside it, and notifications of gates, outcomes and every
certificate a person must act on.
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator

from kubernetes.client import CoreV1Api, CustomObjectsApi, NetworkingV1Api

from flows.kernel import Runbook, runbook_flow
from plans.certificates import (RUNBOOK, Finding, assemble_inventory, certificate_scope, cluster_remedy,
                                findings_for, plan_renewals, renewed, table_rows)
from plans.cluster_certificates import NO_UNDO as ROTATION_NO_UNDO
from plans.cluster_certificates import own_certificates, plan_rotation, rotation_policy
from plans.plan import Plan
from plans.record import Check, RunRecord
from plans.targets import CertificateSetTarget
from tasks.azure.clusters import rotate_cluster_certificates as rotate_certificates
from tasks.catalog import AksCluster
from tasks.certificate_report import publish_certificate_table
from tasks.errors import PermanentError
from tasks.kubernetes.certificates import (RenewResult, certificate_issued, list_certificates, list_ingress_endpoints,
                                           list_tls_secrets, read_tls_secret, renew_certificate)
from tasks.tls import api_server_rotated, endpoint_presents, read_cluster_certificates

NO_UNDO = ("re-issuing has no undo, and needs none: the old Secret is never deleted first, so a failed issuance "
           "leaves the previous certificate in place and served; the report gives its details")


@runbook_flow(name=RUNBOOK, description="Certificate Renewal: inventory every TLS certificate, renew what is due "
                                        "with cert-manager, prove the new certificate is served.")
def certificate_renewal(environment: str, requested_by: str, reason: str = "", renew_within_days: int | None = None,
                        dry_run: bool = False, emergency_override: str | None = None,
                        rotate_cluster_certificates: bool = False) -> RunRecord:
    """Certificate Renewal: inventory, renew what is due, verify with a TLS handshake, report.

    Args:
        environment: Environment from the catalog (production, staging, ...). Required: there is no default.
        requested_by: Who asks for this run (your name). They may not approve it themselves.
        reason: Why: the alert, ticket or schedule.
        renew_within_days: Renew what expires within this many days. Default: the catalog's renew_within_days.
        dry_run: Inventory and plan only: publish the table and the plan, change nothing.
        emergency_override: A reason to proceed inside a change freeze; it is recorded in the report.
        rotate_cluster_certificates: Rotate the AKS cluster's own certificates instead of renewing: disruptive
            (the API server is down for up to 30 minutes), no undo, always behind approval.
    """
    with Runbook(RUNBOOK, environment=environment, requested_by=requested_by, reason=reason, dry_run=dry_run,
                 emergency_override=emergency_override) as run:
        # 1. Preflight (read-only): which namespaces are this environment's, the guards, then the inventory.
        policy, now = run.environment.certificates, _now()
        within = _threshold(renew_within_days, policy.renew_within_days)
        scope = certificate_scope(environment, _environments(run))
        target = run.guard(CertificateSetTarget(environment=environment, cluster=run.environment.cluster.identity(),
                                                scope=scope.describe()))
        aks = run.aks_cluster if rotate_cluster_certificates else None     # not AKS: refused, naming AKS ones
        core, custom = CoreV1Api(run.kubernetes), CustomObjectsApi(run.kubernetes)
        inventory = assemble_inventory(target.cluster, list_tls_secrets(core), list_certificates(custom),
                                       list_ingress_endpoints(NetworkingV1Api(run.kubernetes)),
                                       read_cluster_certificates(run.kubernetes) if scope.owns_cluster else [])
        findings = findings_for(inventory, scope=scope, now=now, renew_within=within, owner=policy.owner,
                                cluster_remedy=cluster_remedy(isinstance(run.environment.cluster, AksCluster)))
        with certificate_table(run, findings, cluster=target.cluster, now=now) as results:
            run.before(_counts(findings), f"{len(findings)} certificate(s) in {scope.describe()} "
                                          f"({inventory.api_calls} API calls)")

            # 2. Plan: the Certificates to re-issue. Whatever needs a person is notified now, dry run or not.
            _notify_owner(run, findings)
            if aks is not None:
                return _rotate(run, aks, plan_rotation(target, findings, cluster=f"{aks.resource_group}/{aks.name}",
                                                       owns_cluster=scope.owns_cluster, now=now), findings, results)
            plan = plan_renewals(target, findings, now=now)
            if run.stop_after_plan(plan):
                return run.record

            # 3. Approval gate: the plan, with every finding it rests on.
            run.approve()

            # 4. Procedure: ask cert-manager to re-issue each one, the `cmctl renew` way.
            due = [f for f in findings if f.action == "renew"]
            renewals = [(f, run.apply(change, lambda f=f: renew_certificate(
                custom, namespace=f.namespace, name=f.certificate), no_undo=NO_UNDO))
                for f, change in zip(due, plan.changes)]

            # 5. Verification: a new revision, a new serial beyond the threshold, served on every endpoint.
            run.verify(lambda: _checks(run, core, custom, renewals, within, results),
                       explain=lambda: _previous_certificates(run, renewals, results))
            run.after({"renewed": {f.key: results[f.key] for f, _ in renewals}})
    return run.record


def _rotate(run: Runbook, aks: AksCluster, plan: Plan, findings: list[Finding], results: dict[str, str]
            ) -> RunRecord:
    """The rotation run: plan, a gate no environment auto-approves, rotate, a handshake shows a new serial."""
    own = own_certificates(findings)
    for finding in findings:
        results[finding.key] = ("dry run: would rotate" if run.dry_run else "not rotated") if finding in own else (
            "not renewed: this run rotates the cluster's certificates" if finding.action == "renew" else "")
    if run.stop_after_plan(plan):
        return run.record
    run.approve(run.environment.approval.model_copy(
        update={"policy": rotation_policy(run.environment.approval.policy)}))
    rotated = run.apply(plan.changes[0], lambda: rotate_certificates(
        run.azure, resource_group=aks.resource_group, name=aks.name, poll_seconds=aks.operation_poll_seconds),
        no_undo=ROTATION_NO_UNDO)
    server = next((f.details for f in own if f.namespace == "(cluster)" and f.details), None)
    checks = run.verify(lambda: [
        Check(name="rotation operation", passed=rotated.provisioning_state == "Succeeded",
              detail=f"AKS cluster {aks.name}: rotateClusterCertificates ended {rotated.provisioning_state}"),
        api_server_rotated(run.kubernetes, previous_serial=server.serial if server else "",
                           timeout_seconds=run.environment.verify_timeout_seconds)])
    for finding in own:
        results[finding.key] = f"rotated: {checks[-1].detail}"
    run.record.next_steps.append(f"fetch new credentials: az aks get-credentials -g {aks.resource_group} "
                                 f"-n {aks.name} (the previous client certificates no longer work)")
    run.after({"rotated": checks[-1].detail})
    return run.record


def _checks(run: Runbook, core: CoreV1Api, custom: CustomObjectsApi, renewals: list[tuple[Finding, RenewResult]],
            within: dt.timedelta, results: dict[str, str]) -> list[Check]:
    timeout = run.environment.verify_timeout_seconds
    checks: list[Check] = []
    for finding, renewal in renewals:
        issued = certificate_issued(custom, namespace=finding.namespace, name=finding.certificate,
                                    after_revision=renewal.previous_revision, timeout_seconds=timeout)
        found = [issued]
        if issued.passed:
            secret = read_tls_secret(core, namespace=finding.namespace, name=finding.secret)
            found.append(renewed(finding.details, secret.details, secret.problem, now=_now(), renew_within=within,
                                 name=finding.key))
            if found[-1].passed:
                found += [endpoint_presents(e, serial=secret.details.serial, timeout_seconds=timeout)
                          for e in finding.endpoints]
        failed = [c.detail for c in found if not c.passed]
        results[finding.key] = ("FAILED: " + "; ".join(failed)) if failed else (
            f"renewed: {found[1].detail}; served on {len(found) - 2} endpoint(s)")
        checks += found
    return checks


def _previous_certificates(run: Runbook, renewals: list[tuple[Finding, RenewResult]],
                           results: dict[str, str]) -> list[str]:
    """For each renewal that failed: the previous certificate, and what its endpoints present now."""
    steps = []
    for finding, _ in renewals:
        if not results.get(finding.key, "").startswith("FAILED"):
            continue
        previous = finding.details.describe() if finding.details else "none (the Secret held no readable certificate)"
        steps.append(f"{finding.key} was not renewed; the previous certificate is still in Secret "
                     f"{finding.namespace}/{finding.secret}: {previous}. Fix the cause above (the issuer, the "
                     f"Certificate's spec), then re-run")
        if finding.details:
            run.evidence(*[f"now {'PASS' if c.passed else 'FAIL'}: {c.detail}" for c in
                           [endpoint_presents(e, serial=finding.details.serial, timeout_seconds=5)
                            for e in finding.endpoints]])
    return steps


@contextmanager
def certificate_table(run: Runbook, findings: list[Finding], *, cluster: str, now: dt.datetime
                      ) -> Iterator[dict[str, str]]:
    """Yield the per-certificate results to fill in; publish the table on every exit, whatever happened."""
    results: dict[str, str] = {}
    stopped = ""
    try:
        yield results
    except BaseException as exc:
        stopped = f"not renewed: the run stopped ({type(exc).__name__}: {str(exc)[:160]})"
        raise
    finally:
        for finding in findings:
            if finding.action == "renew" and finding.key not in results:
                results[finding.key] = "dry run: would renew" if run.dry_run else (stopped or "not renewed")
        publish_certificate_table(table_rows(findings, results, cluster=cluster, now=now),
                                  environment=run.environment_name,
                                  summary=f"{RUNBOOK} on {run.environment_name}: {len(findings)} certificate(s)")


def _notify_owner(run: Runbook, findings: list[Finding]) -> None:
    manual = [f for f in findings if f.action == "report"]
    if manual:
        run.notify("failure", f"{len(manual)} certificate(s) in {run.environment_name} need a person "
                              f"({manual[0].owner}): " + "; ".join(f"{f.key}: {f.reason}" for f in manual))


def _counts(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.decision] = counts.get(finding.decision, 0) + 1
    return counts


def _environments(run: Runbook) -> dict[str, tuple[str, bool, set[str]]]:
    return {name: (env.cluster.identity(), env.production, {s.namespace for s in env.services.values()})
            for name, env in run.catalog.environments.items()}


def _threshold(days: int | None, default: int) -> dt.timedelta:
    if days is not None and days <= 0:
        raise PermanentError(f"renew_within_days must be a positive number of days, not {days}")
    return dt.timedelta(days=days or default)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


__all__ = ["certificate_renewal"]
