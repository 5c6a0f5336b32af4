"""Planning an AKS cluster's certificate rotation (`az aks rotate-certs`): a separate, disruptive change.

AKS regenerates the cluster's certificates (API server, kubelets, client credentials, its CAs); the docs say
it takes up to 30 minutes and the API server is unavailable meanwhile, and every client needs new credentials
afterwards. So it is never part of an ordinary renewal: the runbook plans it only when asked, and asks a
person even where the environment auto-approves.
"""
from __future__ import annotations

import datetime as dt

from .certificates import RUNBOOK, Finding
from .plan import Change, Plan, PlanningError
from .targets import CertificateSetTarget

OWN = ("(cluster)", "(credentials)")        # the namespaces findings give the cluster's own certificates
DOWNTIME = ("the API server is unavailable for up to 30 minutes while AKS rotates the certificates (kubectl, "
            "controllers and pipelines that use the API fail meanwhile; running workloads keep serving)")
NO_UNDO = ("a certificate rotation cannot be undone: AKS keeps no previous certificates to put back, and the old "
           "client credentials stop working; fetch new credentials (az aks get-credentials) after it")


def own_certificates(findings: list[Finding]) -> list[Finding]:
    """The findings for the cluster's own certificates (the API server's, the run's client certificate)."""
    return [f for f in findings if f.namespace in OWN]


def rotation_policy(policy: str) -> str:
    """A rotation needs a person's approval even where the environment auto-approves."""
    return "one" if policy == "auto" else policy


def plan_rotation(target: CertificateSetTarget, findings: list[Finding], *, cluster: str, owns_cluster: bool,
                  now: dt.datetime) -> Plan:
    """The one change: rotate `cluster`'s certificates; the cluster's certificates as found are the evidence.

    Raises:
        PlanningError: the environment does not own the cluster (it shares it, scoped to its namespaces).
    """
    if not owns_cluster:
        raise PlanningError(f"rotating the certificates of {cluster} is refused for {target.environment}: it "
                            f"shares the cluster ({target.scope}); run it from the environment that owns the cluster")
    own = own_certificates(findings)
    before = "; ".join(f"{f.secret}: serial {f.details.serial}, expires in {f.expires_in(now)}" if f.details
                       else f"{f.secret}: {f.reason}" for f in own) or "not read"
    change = Change(resource=f"AKS cluster {cluster}", field="certificates (rotateClusterCertificates)",
                    before=before, after=f"new certificates and CAs; {DOWNTIME}")
    summary = (f"rotate the certificates of AKS cluster {cluster} (az aks rotate-certs): DISRUPTIVE, {DOWNTIME}; "
               f"no undo. Cert-manager Certificates are not renewed in this run")
    evidence = [f"{f.decision.upper()} {f.key}: {f.reason}" for f in own]
    return Plan(runbook=RUNBOOK, target=target, summary=summary, changes=[change], evidence=evidence)
