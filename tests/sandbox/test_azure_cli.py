"""`runbooks sandbox` starts the Azure stand-in next to the Kubernetes API and writes what a client needs into
DIR/env; a restart keeps its address and identities."""
from __future__ import annotations

import signal
import stat

import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.containerservice import ContainerServiceClient

from sandbox.azure import local
from tests.conftest import start_sandbox
from tests.sandbox.test_cli import start, wait_ready

pytestmark = pytest.mark.timeout(60)


def test_sandbox_command_serves_arm_and_entra_id_and_writes_their_settings_to_env(tmp_path):
    proc = start(tmp_path)
    try:
        wait_ready(tmp_path, proc)
        env = dict(line.removeprefix("export ").split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
        assert stat.S_IMODE((tmp_path / "env").stat().st_mode) == 0o600          # it holds a client secret
        assert not any(key.startswith("AZURE_") for key in env)          # nothing azure-identity picks up by itself
        ca = env["RUNBOOKS_AZURE_CA_BUNDLE"]
        credential = ClientSecretCredential(env["RUNBOOKS_AZURE_TENANT_ID"], env["RUNBOOKS_AZURE_CLIENT_ID"],
                                            env["RUNBOOKS_AZURE_CLIENT_SECRET"],
                                            authority=env["RUNBOOKS_AZURE_AUTHORITY"],
                                            disable_instance_discovery=True, connection_verify=ca)
        with ContainerServiceClient(credential, env["RUNBOOKS_AZURE_SUBSCRIPTION_ID"],
                                    base_url=env["RUNBOOKS_ARM_ENDPOINT"], connection_verify=ca) as client:
            [cluster] = client.managed_clusters.list()
        assert cluster.name == "runbooks-sandbox"
        assert {(p.name, p.count) for p in cluster.agent_pool_profiles} == {("system", 1), ("user", 3)}
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Azure Resource Manager and Entra ID at https://127.0.0.1:" in output


def test_a_restarted_azure_stand_in_keeps_its_address_and_identities(tmp_path):
    kube = start_sandbox()
    try:
        first = local.start_next_to(kube, tmp_path)
        before = first.credentials()
        first.stop()
        second = local.start_next_to(kube, tmp_path)
        after = second.credentials()
        second.stop()
    finally:
        kube.stop()
    assert (after.arm_endpoint, after.tenant_id, after.client_id, after.client_secret, after.subscription_id) == (
        before.arm_endpoint, before.tenant_id, before.client_id, before.client_secret, before.subscription_id)
    assert stat.S_IMODE((tmp_path / "azure.json").stat().st_mode) == 0o600
    assert (tmp_path / "azure-ca.crt").read_bytes() == second.ca.cert_pem      # the CA a restart generated
