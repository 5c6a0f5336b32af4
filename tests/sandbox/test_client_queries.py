"""The sandbox as the real `kubernetes` Python client reads it: selectors, paging and watch.

Every test asserts what the client put on the wire (the sandbox's request log) and what the server then
holds (state read back), so a sandbox that answered plausibly but stored the wrong thing fails.
"""
from __future__ import annotations

import collections
import json
import threading
import time

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.sandbox.client_helpers import configmap, rv, status_of

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------------------------
# selectors

def _names(listing) -> list[str]:
    return [o.metadata.name for o in listing.items]


def test_label_selectors_equality_and_set_based(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    for name, labels in [("a", {"app": "web", "tier": "fe"}), ("b", {"app": "api", "tier": "be"}),
                         ("c", {"app": "db"}), ("d", {})]:
        core.create_namespaced_config_map("default", configmap(name, labels))

    def select(selector: str) -> list[str]:
        return _names(core.list_namespaced_config_map("default", label_selector=selector))

    assert select("app=web") == ["a"]
    assert select("app==api") == ["b"]
    assert select("app!=web") == ["b", "c", "d"]          # != also matches objects without the label
    assert select("app in (web, api)") == ["a", "b"]
    assert select("app notin (web,api)") == ["c", "d"]
    assert select("tier") == ["a", "b"]
    assert select("!tier") == ["c", "d"]
    assert select("app in (web,api),tier=be") == ["b"]
    assert select("") == ["a", "b", "c", "d"]
    assert quiet.requests.entries()[-2].query == {"labelSelector": "app in (web,api),tier=be"}


def test_field_selectors_on_names_namespaces_pods_and_secrets(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_config_map("default", configmap("one"))
    core.create_namespaced_config_map("default", configmap("two"))
    core.create_namespaced_config_map("other", configmap("one"))

    assert _names(core.list_namespaced_config_map("default", field_selector="metadata.name=one")) == ["one"]
    assert _names(core.list_namespaced_config_map("default", field_selector="metadata.name!=one")) == ["two"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=other")
    assert [(o.metadata.namespace, o.metadata.name) for o in everywhere.items] == [("other", "one")]
    both = core.list_config_map_for_all_namespaces(field_selector="metadata.name=one")
    assert [o.metadata.namespace for o in both.items] == ["default", "other"]

    for name, node in [("p1", "node-0"), ("p2", "node-1"), ("p3", "node-0")]:
        core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]}})
    core.patch_namespaced_pod_status("p3", "default", {"status": {"phase": "Running"}})
    assert _names(core.list_namespaced_pod("default", field_selector="spec.nodeName=node-0")) == ["p1", "p3"]
    assert _names(core.list_namespaced_pod("default", field_selector="status.phase=Running")) == ["p3"]
    assert _names(core.list_namespaced_pod("default", field_selector="status.phase!=Running")) == ["p1", "p2"]
    assert _names(core.list_namespaced_pod(
        "default", field_selector="spec.nodeName=node-0,status.phase=Pending")) == ["p1"]

    core.create_namespaced_secret("default", {"metadata": {"name": "plain"}, "stringData": {"k": "v"}})
    core.create_namespaced_secret("default", {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                                              "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}})
    assert _names(core.list_namespaced_secret("default", field_selector="type=kubernetes.io/tls")) == ["tls"]
    assert _names(core.list_namespaced_secret("default", field_selector="type=Opaque")) == ["plain"]


def test_unsupported_field_selector_is_400(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("one"))
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", field_selector="spec.hostname=x")
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == "field label not supported: spec.hostname"
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default", field_selector="data.k=v")
    assert exc.value.status == 400 and "data.k" in status_of(exc.value)["message"]
    assert quiet.requests.entries()[-1].query == {"fieldSelector": "data.k=v"}


# ----------------------------------------------------------------------------------------------
# pagination

def test_list_pagination_follows_continue_tokens(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    expected = [f"cm-{i:02d}" for i in range(25)]
    for name in reversed(expected):               # creation order must not matter: lists are sorted by name
        core.create_namespaced_config_map("default", configmap(name))
    mark = quiet.requests.mark()

    seen: list[str] = []
    remaining: list[int | None] = []
    token = None
    while True:
        page = core.list_namespaced_config_map("default", limit=10, _continue=token)
        seen += _names(page)
        remaining.append(page.metadata.remaining_item_count)
        token = page.metadata._continue
        if not token:
            break
    assert seen == expected
    assert remaining == [15, 5, None]
    queries = [e.query for e in quiet.requests.entries(mark)]
    assert [q.get("limit") for q in queries] == ["10", "10", "10"]
    assert "continue" not in queries[0] and all("continue" in q for q in queries[1:])

    # a selector applies before paging
    page = core.list_namespaced_config_map("default", limit=2, field_selector="metadata.name!=cm-00")
    assert _names(page) == ["cm-01", "cm-02"] and page.metadata.remaining_item_count == 22


# ----------------------------------------------------------------------------------------------
# watch

def _stream(list_fn, **kwargs) -> list[tuple[str, str, int]]:
    """All events of one watch as (type, name, resourceVersion)."""
    out = []
    for event in watch.Watch().stream(list_fn, **kwargs):
        raw = event["raw_object"]
        out.append((event["type"], raw["metadata"].get("name", ""), int(raw["metadata"]["resourceVersion"])))
    return out


def test_watch_from_resource_version_replays_changes_in_order(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("before"))
    since = core.list_namespaced_config_map("default").metadata.resource_version

    core.create_namespaced_config_map("default", configmap("c"))
    core.patch_namespaced_config_map("c", "default", {"data": {"k": "v2"}})
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})          # another kind: not seen
    core.delete_namespaced_config_map("c", "default")
    mark = quiet.requests.mark()

    started = time.monotonic()
    events = _stream(core.list_namespaced_config_map, namespace="default", resource_version=since,
                     timeout_seconds=1)
    assert time.monotonic() - started >= 0.9      # the server kept the stream open until timeoutSeconds
    assert [(t, n) for t, n, _ in events] == [("ADDED", "c"), ("MODIFIED", "c"), ("DELETED", "c")]
    versions = [v for _, _, v in events]
    assert versions == sorted(versions) and versions[0] > int(since)
    assert versions[-1] == quiet.store.resource_version
    (req,) = quiet.requests.entries(mark)
    assert req.verb == "watch" and req.query["resourceVersion"] == since and req.query["timeoutSeconds"] == "1"


def test_watch_delivers_live_events(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    since = core.list_namespaced_config_map("default").metadata.resource_version
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for event in w.stream(core.list_namespaced_config_map, namespace="default", resource_version=since,
                              timeout_seconds=5):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    # the request is logged as the stream starts, after the server subscribed it
    quiet.wait_for(lambda: any(e.verb == "watch" for e in quiet.requests.entries()), timeout=2)
    core.create_namespaced_config_map("default", configmap("live"))
    core.replace_namespaced_config_map("live", "default", configmap("live", data={"k": "new"}))
    core.delete_namespaced_config_map("live", "default")
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert events == [("ADDED", "live"), ("MODIFIED", "live"), ("DELETED", "live")]


@pytest.mark.parametrize("resource_version", ["0", None])
def test_watch_without_version_starts_with_synthetic_added_events(quiet, quiet_client, resource_version):
    core = client.CoreV1Api(quiet_client)
    for name in ("x", "y"):
        core.create_namespaced_config_map("default", configmap(name))
    core.patch_namespaced_config_map("x", "default", {"data": {"k": "changed"}})
    kwargs = {"resource_version": resource_version} if resource_version is not None else {}
    events = _stream(core.list_namespaced_config_map, namespace="default", timeout_seconds=1, **kwargs)
    # current state only: one ADDED per existing object, at its current version, no MODIFIED history
    assert [(t, n) for t, n, _ in events] == [("ADDED", "x"), ("ADDED", "y")]
    assert events[0][2] == rv(quiet.get("ConfigMap", "x", "default"))


def test_selector_filtered_watch_turns_label_changes_into_deleted_and_added(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("m", {"app": "web"}))
    since = core.list_namespaced_config_map("default").metadata.resource_version
    core.patch_namespaced_config_map("m", "default", {"data": {"k": "2"}})              # still matches
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"app": "api"}}})   # leaves
    core.create_namespaced_config_map("default", configmap("other", {"app": "api"}))     # never matches
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"app": "web"}}})   # returns

    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace="default",
                                      label_selector="app=web", resource_version=since, timeout_seconds=1):
        seen.append((event["type"], event["raw_object"]))
    assert [(t, o["metadata"]["name"]) for t, o in seen] == [("MODIFIED", "m"), ("DELETED", "m"), ("ADDED", "m")]
    deleted = seen[1][1]
    # like the real watch cache: DELETED carries the last state that matched, at the event's version
    assert deleted["metadata"]["labels"] == {"app": "web"} and deleted["data"] == {"k": "2"}
    assert int(deleted["metadata"]["resourceVersion"]) > int(seen[0][1]["metadata"]["resourceVersion"])
    assert seen[2][1]["metadata"]["labels"] == {"app": "web"}
    assert quiet.requests.entries()[-1].query["labelSelector"] == "app=web"


def test_watch_bookmarks_carry_the_current_resource_version(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("b"))
    since = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_secret("default", {"metadata": {"name": "unrelated"}})   # bumps the cluster version
    events = list(watch.Watch().stream(core.list_namespaced_config_map, namespace="default",
                                       resource_version=since, allow_watch_bookmarks=True, timeout_seconds=2))
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2, [e["type"] for e in events]             # every 0.5 s in the fixture
    assert all(e["type"] == "BOOKMARK" for e in events)
    for b in bookmarks:
        assert b["raw_object"]["kind"] == "ConfigMap"
        assert b["raw_object"]["metadata"]["resourceVersion"] == str(quiet.store.resource_version)
    assert quiet.requests.entries()[-1].query["allowWatchBookmarks"] == "true"

    # without allowWatchBookmarks: none
    plain = _stream(core.list_namespaced_config_map, namespace="default", resource_version=since,
                    timeout_seconds=1)
    assert plain == []


def test_watch_timeout_seconds_ends_the_stream(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    started = time.monotonic()
    assert _stream(core.list_namespaced_config_map, namespace="default", timeout_seconds=1) == []
    assert 0.9 <= time.monotonic() - started < 2.5


def test_watch_from_compacted_resource_version_is_410_expired(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    quiet.store._history = collections.deque(maxlen=5)
    core.create_namespaced_config_map("default", configmap("c", data={"n": "0"}))
    old = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(1, 9):
        core.replace_namespaced_config_map("c", "default", configmap("c", data={"n": str(i)}))

    with pytest.raises(ApiException) as exc:
        _stream(core.list_namespaced_config_map, namespace="default", resource_version=old, timeout_seconds=1)
    assert exc.value.status == 410
    assert "Expired" in exc.value.reason and "too old resource version" in exc.value.reason

    # on the wire: the watch is accepted and the error is the one event of the stream, as the real server sends it
    r = httpx.get(f"{quiet.url}/api/v1/namespaces/default/configmaps",
                  params={"watch": "true", "resourceVersion": old, "timeoutSeconds": "1"})
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {old} (")

    # a version still in the history replays fine
    recent = str(quiet.store.resource_version - 2)
    events = _stream(core.list_namespaced_config_map, namespace="default", resource_version=recent,
                     timeout_seconds=1)
    assert [t for t, _, _ in events] == ["MODIFIED", "MODIFIED"]


