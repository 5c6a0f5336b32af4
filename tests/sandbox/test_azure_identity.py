"""The stand-in's Entra ID tenant and ARM's token check, with the real azure-identity ClientSecretCredential
(MSAL underneath) over HTTPS verified against the stand-in's generated CA."""
from __future__ import annotations

import ssl
import time
from typing import Iterator

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from sandbox.azure.server import AzureConfig, AzureSandbox
from tests.sandbox.azure_helpers import arm_client, claims, credential, start_azure

pytestmark = pytest.mark.timeout(60)
ARM_SCOPE = "https://management.azure.com/.default"


@pytest.fixture(scope="module")
def azure() -> Iterator[AzureSandbox]:
    stand_in = start_azure()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def https(azure: AzureSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=azure.url, verify=ssl.create_default_context(cafile=str(azure.ca_bundle))) as client:
        yield client


def clusters_path(azure: AzureSandbox) -> str:
    return (f"/subscriptions/{azure.config.subscription_id}/providers/Microsoft.ContainerService/managedClusters"
            f"?api-version=2026-08-01")


def test_a_real_client_secret_credential_gets_an_arm_token_through_openid_discovery(azure):
    mark = azure.requests.mark()
    token = credential(azure).get_token(ARM_SCOPE)
    tenant = azure.config.tenant_id
    assert [(e.method, e.path, e.status) for e in azure.requests.entries(mark)] == [
        ("GET", f"/{tenant}/v2.0/.well-known/openid-configuration", 200),
        ("POST", f"/{tenant}/oauth2/v2.0/token", 200)]
    assert "client_secret=REDACTED" in azure.requests.entries(mark)[1].body     # no secret in the request log
    assert azure.config.client_secret not in str(azure.requests.entries(mark)[1].body)
    issued = claims(token.token)
    assert issued["aud"] == "https://management.azure.com/" and issued["tid"] == tenant
    assert issued["appid"] == azure.config.client_id and issued["ver"] == "1.0"
    assert 3500 < token.expires_on - time.time() <= 3600


def test_entra_id_refuses_a_wrong_secret_an_unknown_client_and_an_unknown_tenant(azure):
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215: Invalid client secret"):
        credential(azure, client_secret="not-the-secret").get_token(ARM_SCOPE)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016: Application with identifier"):
        credential(azure, client_id="00000000-0000-0000-0000-00000000c11e").get_token(ARM_SCOPE)
    with pytest.raises(ClientAuthenticationError, match="Unable to get authority configuration"):
        credential(azure, tenant_id="00000000-0000-0000-0000-0000000000aa").get_token(ARM_SCOPE)


def test_arm_without_a_token_answers_401_in_arms_shape(azure, https):
    answer = https.get(clusters_path(azure))
    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": "AuthenticationFailed",
                                       "message": "Authentication failed. The 'Authorization' header is missing."}}
    assert answer.headers["x-ms-request-id"] and answer.headers["x-ms-correlation-request-id"]
    assert answer.headers["WWW-Authenticate"].startswith(f'Bearer authorization_uri="{azure.url}/')
    assert azure.requests.entries()[-1].status == 401


def test_arm_refuses_tampered_expired_and_wrong_audience_tokens(azure, https):
    def code_for(token: str) -> str:
        answer = https.get(clusters_path(azure), headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
        return answer.json()["error"]["code"]

    good = credential(azure).get_token(ARM_SCOPE).token
    head, body, signature = good.split(".")
    assert code_for(f"{head}.{body}.{signature[:-2]}AA") == "InvalidAuthenticationToken"
    assert code_for(azure.identity.issue("https://management.azure.com/", lifetime=-5)) == "ExpiredAuthenticationToken"
    graph = credential(azure).get_token("https://graph.microsoft.com/.default").token
    assert code_for(graph) == "InvalidAuthenticationTokenAudience"
    other_tenant = azure.identity.issue("https://management.azure.com/", tenant="00000000-0000-0000-0000-0000000000bb")
    assert code_for(other_tenant) == "InvalidAuthenticationTokenTenant"
    ok = https.get(clusters_path(azure), headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 200 and [c["name"] for c in ok.json()["value"]] == [azure.config.cluster_name]


def test_the_sdk_reuses_its_token_and_sees_arms_401_as_an_authentication_error(azure):
    mark = azure.requests.mark()
    client = arm_client(azure)
    for _ in range(3):
        assert [c.name for c in client.managed_clusters.list()] == [azure.config.cluster_name]
    token_requests = [e for e in azure.requests.entries(mark) if e.path.endswith("/oauth2/v2.0/token")]
    assert len(token_requests) == 1                 # MSAL caches the token for its lifetime
    wrong_audience = arm_client(azure, credential_scopes=["https://graph.microsoft.com/.default"])
    with pytest.raises(ClientAuthenticationError) as caught:
        list(wrong_audience.managed_clusters.list())
    assert caught.value.status_code == 401 and caught.value.error.code == "InvalidAuthenticationTokenAudience"


def test_the_stand_in_serves_https_on_loopback_only():
    with pytest.raises(ValueError, match="HTTPS only"):
        AzureConfig(tls=False)
    with pytest.raises(ValueError, match="loopback only"):
        AzureConfig(host="0.0.0.0")
