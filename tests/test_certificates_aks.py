"""An AKS cluster's own certificates, met the way the runbook meets them: user credentials from ARM
(`listClusterUserCredential`, through the real azure-mgmt-containerservice client and the Azure stand-in),
then a TLS handshake with the API server those credentials name."""
from __future__ import annotations

import datetime as dt

import yaml
from kubernetes import config as k8s_config

from plans.certificates import Inventory, Scope, cluster_remedy, findings_for
from tasks.tls import read_cluster_certificates
from tests.conftest import start_sandbox
from tests.sandbox.azure_helpers import arm_client, start_azure


def test_the_api_server_certificate_of_an_aks_cluster_is_read_by_a_handshake_from_its_user_credentials():
    kube = start_sandbox(tls=True, token="kube-t0ken")
    azure = start_azure(kube)
    arm = arm_client(azure)
    try:
        result = arm.managed_clusters.list_cluster_user_credentials(azure.config.resource_group,
                                                                   azure.config.cluster_name)
        api = k8s_config.new_client_from_config_dict(yaml.safe_load(result.kubeconfigs[0].value))
        own = read_cluster_certificates.fn(api)
        api.close()
    finally:
        arm.close()
        azure.stop()
        kube.stop()
    assert [(c.namespace, c.name) for c in own] == [("(cluster)", "API server certificate")]
    server = own[0].details
    assert server.subject == "CN=kube-apiserver" and "127.0.0.1" in server.sans and own[0].hosts == ["127.0.0.1"]
    assert server.issuer == f"CN={kube.ca_common_name}"                # the CA the credentials carry
    found = findings_for(Inventory(cluster="aks", cluster_certificates=own), scope=Scope(),
                         now=dt.datetime.now(dt.timezone.utc), renew_within=dt.timedelta(days=400), owner="team-aks",
                         cluster_remedy=cluster_remedy(aks=True))
    assert [(f.decision, f.action) for f in found] == [("manual", "report")]      # 365-day certificate, 400-day window
    assert "team-aks must rotate the cluster's certificates (az aks rotate-certs" in found[0].reason
