"""Tests for sandbox.patching: RFC 7386, RFC 6902 and Kubernetes strategic merge patch."""
from __future__ import annotations

import copy
import re

import pytest

from sandbox.kubernetes.patching import (
    PatchError,
    StrategicMergeUnsupported,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)


# ----------------------------------------------------------------------------------------------
# RFC 7386, Appendix A (rows whose patch is an object; the others are rejected, see below)

@pytest.mark.parametrize("target, patch, expected", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_rfc7386_examples(target, patch, expected):
    assert apply_merge_patch(target, patch) == expected


@pytest.mark.parametrize("patch", [["c", "d"], None, "bar"])
def test_merge_patch_non_object_body_rejected(patch):
    with pytest.raises(PatchError):
        apply_merge_patch({"a": "foo"}, patch)


def test_merge_patch_does_not_mutate_or_share():
    target = {"a": {"b": [1, 2]}, "x": 1}
    patch = {"a": {"c": {"d": 1}}, "x": None}
    t0, p0 = copy.deepcopy(target), copy.deepcopy(patch)
    out = apply_merge_patch(target, patch)
    assert out == {"a": {"b": [1, 2], "c": {"d": 1}}}
    assert target == t0 and patch == p0
    out["a"]["b"].append(3)
    out["a"]["c"]["d"] = 2
    assert target == t0 and patch == p0


# ----------------------------------------------------------------------------------------------
# RFC 6902, Appendix A

@pytest.mark.parametrize("target, ops, expected", [
    # A.1 adding an object member
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    # A.2 adding an array element
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
    # A.3 removing an object member
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    # A.4 removing an array element
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    # A.5 replacing a value
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo", "foo": "bar"}),
    # A.6 moving a value
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    # A.7 moving an array element
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    # A.8 testing a value: success
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    # A.10 adding a nested member object
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    # A.11 ignoring unrecognized elements
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    # A.14 ~ escape ordering
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    # A.16 adding an array value
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}], {"foo": ["bar", ["abc", "def"]]}),
    # copy, and "~1" addressing a key with a slash
    ({"metadata": {"annotations": {"a/b": "x"}}},
     [{"op": "copy", "from": "/metadata/annotations/a~1b", "path": "/metadata/annotations/c~0d"},
      {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "y"}],
     {"metadata": {"annotations": {"a/b": "y", "c~d": "x"}}}),
])
def test_json_patch_rfc6902_examples(target, ops, expected):
    assert apply_json_patch(target, ops) == expected


@pytest.mark.parametrize("target, ops, message", [
    # A.9 testing a value: error
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "testing value /baz failed"),
    # A.12 adding to a nonexistent target
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "doc is missing path"),
    # A.15 comparing strings and numbers
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "testing value /~01 failed"),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": True}], "testing value /a failed"),
    ({"a": 1}, [{"op": "remove", "path": "/b"}], "Unable to remove nonexistent key: b"),
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], "doc is missing key: /b"),
    ({"a": [1]}, [{"op": "add", "path": "/a/5", "value": 2}], "invalid index"),
    ({"a": [1]}, [{"op": "remove", "path": "/a/1"}], "invalid index"),
    ({"a": 1}, [{"op": "move", "from": "/x", "path": "/y"}], "missing from path: /x"),
    ({"a": 1}, [{"op": "frobnicate", "path": "/a"}], "Unexpected kind: frobnicate"),
])
def test_json_patch_failures(target, ops, message):
    with pytest.raises(PatchError, match=re.escape(message)):
        apply_json_patch(target, ops)


def test_json_patch_failed_test_applies_nothing_and_keeps_input():
    target = {"spec": {"replicas": 1}}
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5},
           {"op": "test", "path": "/spec/replicas", "value": 4}]
    with pytest.raises(PatchError, match="testing value /spec/replicas failed: test failed"):
        apply_json_patch(target, ops)
    assert target == {"spec": {"replicas": 1}}


@pytest.mark.parametrize("body", [{"op": "add", "path": "/a", "value": 1}, "x", 3])
def test_json_patch_non_list_body(body):
    with pytest.raises(PatchError, match="cannot unmarshal"):
        apply_json_patch({}, body)


def test_json_patch_does_not_mutate_or_share():
    target = {"a": {"b": [1]}}
    value = {"deep": [1]}
    ops = [{"op": "add", "path": "/a/c", "value": value}, {"op": "add", "path": "/a/b/-", "value": 2}]
    t0, o0 = copy.deepcopy(target), copy.deepcopy(ops)
    out = apply_json_patch(target, ops)
    assert out == {"a": {"b": [1, 2], "c": {"deep": [1]}}}
    out["a"]["c"]["deep"].append(9)
    assert target == t0 and ops == o0


# ----------------------------------------------------------------------------------------------
# Strategic merge patch

def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                     "finalizers": ["a.example.com/x", "b.example.com/y"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "web:v1", "args": ["--port", "8080"],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 8080, "protocol": "TCP"}]},
                        {"name": "sidecar", "image": "proxy:v1"},
                    ],
                    "tolerations": [{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}],
                },
            },
        },
    }


def smp(patch: dict, target: dict | None = None, kind: str = "Deployment") -> dict:
    return apply_strategic_merge_patch(deployment() if target is None else target, patch, kind=kind)


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_smp_container_image_merges_by_name():
    out = smp({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:v2"}]}}}})
    app, sidecar = containers(out)
    assert app == {**containers(deployment())[0], "image": "web:v2"}
    assert sidecar == {"name": "sidecar", "image": "proxy:v1"}
    assert out["spec"]["replicas"] == 2 and out["metadata"]["labels"] == {"app": "web", "tier": "front"}


def test_smp_kubectl_set_image_with_set_element_order():
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
                                            "containers": [{"image": "web:v2", "name": "app"}]}}}}
    out = smp(patch)
    # The sidecar is not in the order list: it is kept, after the ordered items.
    assert [c["name"] for c in containers(out)] == ["app", "sidecar"]
    assert containers(out)[0]["image"] == "web:v2" and containers(out)[0]["env"][1] == {"name": "B", "value": "2"}
    assert "$setElementOrder/containers" not in out["spec"]["template"]["spec"]


def test_smp_set_element_order_reorders_like_kubectl_apply():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "app"}],
        "containers": [{"name": "new", "image": "n:1"}]}}}}
    assert [c["name"] for c in containers(smp(patch))] == ["sidecar", "new", "app"]


def test_smp_set_element_order_mismatch_is_an_error():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "s"}, {"name": "app", "image": "a"}]}}}}
    with pytest.raises(PatchError, match="doesn't match"):
        smp(patch)


def test_smp_new_container_without_order_goes_first_like_the_real_server():
    # normalizeElementOrder/mergeSortedSlice puts an item unknown to the server before server-only items.
    out = smp({"spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}}})
    assert [c["name"] for c in containers(out)] == ["debug", "app", "sidecar"]


def test_smp_env_merges_by_name_and_args_replace():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}], "args": ["--debug"]}]}}}}
    app = containers(smp(patch))[0]
    assert {e["name"]: e["value"] for e in app["env"]} == {"A": "1", "B": "20", "C": "3"}
    assert app["args"] == ["--debug"]
    assert app["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]


def test_smp_ports_merge_by_container_port():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090}]}]}}}}
    ports = containers(smp(patch))[0]["ports"]
    assert {"containerPort": 8080, "protocol": "TCP", "name": "http"} in ports and {"containerPort": 9090} in ports
    assert len(ports) == 2


def test_smp_delete_container_directive():
    out = smp({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}})
    assert containers(out) == [containers(deployment())[0]]


def test_smp_delete_element_needs_merge_key():
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        smp({"spec": {"template": {"spec": {"containers": [{"image": "x", "$patch": "delete"}]}}}})


def test_smp_replace_whole_merge_list():
    out = smp({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}}}})
    assert containers(out) == [{"name": "only", "image": "o"}]


def test_smp_replace_and_delete_map_directives():
    out = smp({"metadata": {"labels": {"$patch": "replace", "new": "1"}},
               "spec": {"selector": {"$patch": "delete"}}})
    assert out["metadata"]["labels"] == {"new": "1"}
    assert "selector" not in out["spec"]


def test_smp_retain_keys_on_strategy_switch_to_recreate():
    # What `kubectl apply` sends when switching RollingUpdate -> Recreate.
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}}
    assert smp(patch)["spec"]["strategy"] == {"type": "Recreate"}
    # Without the directive rollingUpdate survives (and the real server's validation would object).
    assert smp({"spec": {"strategy": {"type": "Recreate"}}})["spec"]["strategy"]["rollingUpdate"]


def test_smp_retain_keys_rejects_patch_fields_outside_the_list():
    with pytest.raises(PatchError, match="retainKeys"):
        smp({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}})


def test_smp_finalizers_union_and_delete_from_primitive_list():
    out = smp({"metadata": {"finalizers": ["b.example.com/y", "c.example.com/z"]}})
    assert out["metadata"]["finalizers"] == ["a.example.com/x", "b.example.com/y", "c.example.com/z"]
    out = smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}})
    assert out["metadata"]["finalizers"] == ["b.example.com/y"]
    out = smp({"metadata": {"$setElementOrder/finalizers": ["b.example.com/y"],
                            "$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}})
    assert out["metadata"] == {**deployment()["metadata"], "finalizers": ["b.example.com/y"]}
    # Deleting from an absent list does not create it.
    assert "finalizers" not in smp({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
                                   target={"metadata": {"name": "n"}}, kind="Namespace")["metadata"]


def test_smp_null_deletes_label():
    out = smp({"metadata": {"labels": {"tier": None, "track": "stable"}}})
    assert out["metadata"]["labels"] == {"app": "web", "track": "stable"}


def test_smp_tolerations_replaced_whole():
    out = smp({"spec": {"template": {"spec": {"tolerations": [{"key": "k3", "operator": "Exists"}]}}}})
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "k3", "operator": "Exists"}]


def test_smp_unknown_fields_merge_as_maps_and_replace_lists():
    target = {"metadata": {"name": "c"}, "data": {"a": "1"}, "extra": {"x": {"y": 1}, "list": [1, 2]}}
    out = apply_strategic_merge_patch(target, {"data": {"b": "2"}, "extra": {"x": {"z": 2}, "list": [3]}},
                                      kind="ConfigMap")
    assert out == {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "extra": {"x": {"y": 1, "z": 2}, "list": [3]}}


def test_smp_type_change_replaces():
    out = smp({"spec": {"replicas": {"weird": True}, "strategy": "Recreate"}})
    assert out["spec"]["replicas"] == {"weird": True} and out["spec"]["strategy"] == "Recreate"


def test_smp_directives_never_leak_into_new_fields():
    target = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    patch = {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "gone", "$patch": "delete"}],
                      "$setElementOrder/initContainers": [{"name": "init"}],
                      "initContainers": [{"name": "init", "image": "i", "env": [{"name": "X", "value": None}]}]},
             "metadata": {"labels": {"$patch": "replace", "a": "b"}, "annotations": {"$patch": "delete"}}}
    out = apply_strategic_merge_patch(target, patch, kind="Pod")
    assert out == {"metadata": {"name": "p", "labels": {"a": "b"}},
                   "spec": {"containers": [{"name": "c", "image": "i"}],
                            "volumes": [{"name": "v", "emptyDir": {}}],
                            "initContainers": [{"name": "init", "image": "i", "env": [{"name": "X"}]}]}}


def test_smp_node_and_pod_status_lists():
    node = {"metadata": {"name": "n1"},
            "spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}],
                       "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}}
    out = apply_strategic_merge_patch(node, {
        "spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"], "taints": []},
        "status": {"conditions": [{"type": "Ready", "status": "False"}],
                   "addresses": [{"type": "Hostname", "address": "n1"}]}}, kind="Node")
    assert out["spec"] == {"podCIDRs": ["10.0.0.0/24", "fd00::/64"], "taints": []}
    assert {c["type"]: c["status"] for c in out["status"]["conditions"]} == {"Ready": "False", "DiskPressure": "False"}
    assert len(out["status"]["addresses"]) == 2

    pod = {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "a", "ready": True}, {"name": "b"}]}}
    out = apply_strategic_merge_patch(pod, {"status": {"containerStatuses": [{"name": "a", "ready": False}]}}, kind="Pod")
    assert out["status"]["containerStatuses"] == [{"name": "a", "ready": False}]


def test_smp_service_ports_merge_by_port_and_owner_references_by_uid():
    svc = {"metadata": {"name": "s", "ownerReferences": [{"uid": "1", "name": "a"}]},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = apply_strategic_merge_patch(svc, {"metadata": {"ownerReferences": [{"uid": "1", "controller": True}]},
                                            "spec": {"ports": [{"port": 80, "name": "http"}]}}, kind="Service")
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}]
    assert out["metadata"]["ownerReferences"] == [{"uid": "1", "name": "a", "controller": True}]


def test_smp_unsupported_kind():
    with pytest.raises(StrategicMergeUnsupported, match="strategic merge patch is not supported for Certificate") as err:
        apply_strategic_merge_patch({"metadata": {}}, {"spec": {}}, kind="Certificate")
    assert isinstance(err.value, PatchError)


def test_smp_unknown_directive_rejected():
    with pytest.raises(PatchError, match="unknown patch type"):
        smp({"spec": {"strategy": {"$patch": "explode"}}})


def test_smp_inputs_never_mutated_nor_shared():
    target = deployment()
    patch = {"metadata": {"labels": {"tier": None}, "$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]},
             "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                      "template": {"spec": {"$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                                            "containers": [{"name": "app", "env": [{"name": "N", "value": "v"}]},
                                                           {"name": "sidecar", "$patch": "delete"}]}}}}
    t0, p0 = copy.deepcopy(target), copy.deepcopy(patch)
    out = apply_strategic_merge_patch(target, patch, kind="Deployment")
    assert target == t0 and patch == p0
    assert [c["name"] for c in containers(out)] == ["app"]
    containers(out)[0]["env"].append({"name": "Z"})
    out["metadata"]["labels"]["q"] = "1"
    assert target == t0 and patch == p0


# Cases from k8s.io/apimachinery strategicpatch patch_test.go, mapped onto Pod containers (merge key
# name) and metadata.finalizers (merging primitive list).
@pytest.mark.parametrize("original, patch, expected", [
    ([{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}],
     {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}, {"name": "2", "other": "x"}]},
     [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}, {"name": "2", "value": "b", "other": "x"}]),
    ([{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}],
     {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]},
     [{"name": "2", "value": "b"}, {"name": "3", "value": "c"}, {"name": "1", "value": "a"}]),
    ([{"name": "1"}, {"name": "1"}, {"name": "2", "value": "a"}, {"name": "3"}, {"name": "3"}],
     {"containers": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]},
     [{"name": "2", "value": "a"}]),
    ([{"name": "1"}, {"name": "3"}],
     {"$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
      "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]},
     [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]),
    ([{"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}],
     {"$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
      "containers": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]},
     [{"name": "4", "value": "4"}, {"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"},
      {"name": "3", "value": "3"}]),
    ([{"name": "hello2"}],
     {"$setElementOrder/containers": [{"name": "hello"}, {"name": "doesntexist"}],
      "containers": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]},
     [{"name": "hello"}, {"name": "hello2"}]),
])
def test_smp_upstream_merge_list_cases(original, patch, expected):
    out = apply_strategic_merge_patch({"spec": {"containers": original}}, {"spec": patch}, kind="Pod")
    assert out == {"spec": {"containers": expected}}


@pytest.mark.parametrize("original, patch, expected", [
    ([1, 2], {"finalizers": [2, 3]}, [1, 2, 3]),
    ([1, 2, 3], {"finalizers": [3, 1, 2]}, [3, 1, 2]),
    ([1, 2, 3], {"finalizers": [3, 1]}, [2, 3, 1]),
    ([1, 2, 3, 4], {"$setElementOrder/finalizers": [1, 2, 4], "$deleteFromPrimitiveList/finalizers": [3]}, [1, 2, 4]),
    ([1, 2, 3, 3, 4], {"$setElementOrder/finalizers": [1, 2], "$deleteFromPrimitiveList/finalizers": [3]}, [1, 2, 4]),
    ([1, 3], {"$setElementOrder/finalizers": [3, 2, 1]}, [3, 1]),
])
def test_smp_upstream_primitive_list_cases(original, patch, expected):
    out = apply_strategic_merge_patch({"metadata": {"finalizers": original}}, {"metadata": patch}, kind="Pod")
    assert out == {"metadata": {"finalizers": expected}}
