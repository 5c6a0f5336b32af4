"""Label/field selector semantics and error messages, checked against
k8s.io/apimachinery pkg/labels + pkg/fields and the real server's field-label conversions."""

import pytest

from sandbox.kubernetes.selectors import (
    FieldSelector, SelectorError, label_selector_from_object, object_fields,
    parse_field_selector, parse_label_selector, supported_fields,
)

P = parse_label_selector


def match(sel: str, labels) -> bool:
    return P(sel).matches(labels)


# ---------------------------------------------------------------- label: operators

@pytest.mark.parametrize("sel,labels,want", [
    ("app=web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=web", {}, False),
    ("app==web", {"app": "web"}, True),
    ("app==web", {"app": "db"}, False),
    ("app!=web", {"app": "db"}, True),
    ("app!=web", {"app": "web"}, False),
    ("app!=web", {}, True),                       # != matches objects lacking the key
    ("tier in (a,b)", {"tier": "b"}, True),
    ("tier in (a,b)", {"tier": "c"}, False),
    ("tier in (a,b)", {}, False),
    ("tier notin (a,b)", {"tier": "c"}, True),
    ("tier notin (a,b)", {"tier": "a"}, False),
    ("tier notin (a,b)", {}, True),               # notin matches objects lacking the key
    ("app", {"app": ""}, True),
    ("app", {"other": "x"}, False),
    ("!app", {"other": "x"}, True),
    ("!app", {"app": "x"}, False),
    ("a=", {"a": ""}, True),                      # empty value is valid
    ("a=", {"a": "x"}, False),
    ("a in ()", {"a": ""}, True),                 # "()" is the set {""} in the real parser
    ("a in ()", {"a": "x"}, False),
    ("a in (,x)", {"a": ""}, True),
    ("n>5", {"n": "6"}, True),
    ("n>5", {"n": "5"}, False),
    ("n<5", {"n": "x"}, False),
    ("x=in", {"x": "in"}, True),                  # keywords are values in value position
    ("example.com/app=web", {"example.com/app": "web"}, True),
])
def test_operators(sel, labels, want):
    assert match(sel, labels) is want


def test_comma_is_and():
    s = P("app=web,tier in (fe,be),!legacy")
    assert s.matches({"app": "web", "tier": "fe"})
    assert not s.matches({"app": "web", "tier": "db"})
    assert not s.matches({"app": "db", "tier": "fe"})
    assert not s.matches({"app": "web", "tier": "fe", "legacy": "1"})


def test_whitespace_tolerated():
    s = P("  app = web ,\ttier  in  ( a , b ) , ! legacy ")
    assert s.matches({"app": "web", "tier": "b"})
    assert not s.matches({"app": "web", "tier": "b", "legacy": ""})
    assert str(s) == "app=web,!legacy,tier in (a,b)"


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_matches_everything(text):
    s = P(text)
    assert s.empty and s.matches({}) and s.matches(None) and s.matches({"a": "b"})
    assert str(s) == ""


def test_none_labels_treated_as_empty():
    assert P("!a").matches(None)
    assert not P("a").matches(None)


# ---------------------------------------------------------------- label: errors

@pytest.mark.parametrize("text,msg", [
    ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("=b", "found '=', expected: !, identifier, or 'end of string'"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
    ("a" * 64, 'unable to parse requirement: <nil>: Invalid value: "' + "a" * 64
     + '": name part must be no more than 63 characters'),
    ("n>x", 'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer"),
])
def test_invalid_selector_messages(text, msg):
    with pytest.raises(SelectorError) as ei:
        P(text)
    assert str(ei.value) == msg
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("text,fragment", [
    ("-a=b", '<nil>: Invalid value: "-a": name part must consist of alphanumeric characters'),
    ("a/b/c", "a qualified name must consist of"),
    ("/a", "prefix part must be non-empty"),
    ("Example.com/a", "prefix part a lowercase RFC 1123 subdomain"),
    ("a=" + "v" * 64, 'values[0][a]: Invalid value: "' + "v" * 64 + '": must be no more than 63 characters'),
    ("a=b/c", "a valid label must be an empty string or consist of alphanumeric characters"),
    ("a in (x,-y)", "values[0][a]"),
])
def test_invalid_keys_and_values(text, fragment):
    with pytest.raises(SelectorError) as ei:
        P(text)
    assert str(ei.value).startswith("unable to parse requirement: ")
    assert fragment in str(ei.value)


def test_63_char_key_and_value_are_valid():
    k, v = "k" * 63, "v" * 63
    assert P(f"{k}={v}").matches({k: v})
    assert P(f"p.example.com/{k}").matches({f"p.example.com/{k}": ""})


# ---------------------------------------------------------------- label: string form

@pytest.mark.parametrize("text,canonical", [
    ("tier in (b,a),app=web", "app=web,tier in (a,b)"),
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("!b,a!=1,c==2", "a!=1,!b,c==2"),
    ("n>1,m<2", "m<2,n>1"),
    ("a=", "a="),
])
def test_str_canonical_and_round_trip(text, canonical):
    s = P(text)
    assert str(s) == canonical
    again = P(str(s))
    assert again == s and str(again) == canonical
    for labels in [{}, {"a": ""}, {"a": "1"}, {"app": "web", "tier": "a"}, {"x": "", "y": "1"},
                   {"b": "x"}, {"c": "2"}, {"n": "3", "m": "1"}, {"z": "q", "x": "baz", "y": ""}]:
        assert again.matches(labels) == s.matches(labels)


# ---------------------------------------------------------------- label: metav1.LabelSelector

def test_nil_selects_nothing_empty_selects_everything():
    nothing = label_selector_from_object(None)
    assert not nothing.matches({}) and not nothing.matches({"a": "b"}) and not nothing.empty
    for obj in ({}, {"matchLabels": {}, "matchExpressions": []}):
        everything = label_selector_from_object(obj)
        assert everything.empty and everything.matches({}) and everything.matches({"a": "b"})


@pytest.mark.parametrize("expr,yes,no", [
    ({"key": "t", "operator": "In", "values": ["a", "b"]}, [{"t": "a"}], [{"t": "c"}, {}]),
    ({"key": "t", "operator": "NotIn", "values": ["a"]}, [{"t": "b"}, {}], [{"t": "a"}]),
    ({"key": "t", "operator": "Exists"}, [{"t": ""}], [{}]),
    ({"key": "t", "operator": "DoesNotExist", "values": []}, [{}], [{"t": "x"}]),
])
def test_match_expressions(expr, yes, no):
    s = label_selector_from_object({"matchExpressions": [expr]})
    assert all(s.matches(lbl) for lbl in yes)
    assert not any(s.matches(lbl) for lbl in no)


def test_match_labels_and_expressions_are_anded_and_stringified():
    s = label_selector_from_object({"matchLabels": {"app": "web"},
                                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]})
    assert str(s) == "app=web,tier in (a,b)"
    assert s.matches({"app": "web", "tier": "a"})
    assert not s.matches({"app": "web"}) and not s.matches({"tier": "a"})
    assert P(str(s)).matches({"app": "web", "tier": "b"})


@pytest.mark.parametrize("obj,msg", [
    ({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, '"Foo" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn"}]},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: ["x"]: values set must be empty for exists and does not exist'),
])
def test_invalid_selector_objects(obj, msg):
    with pytest.raises(SelectorError) as ei:
        label_selector_from_object(obj)
    assert str(ei.value) == msg


def test_invalid_match_labels():
    with pytest.raises(SelectorError, match=r"^key: Invalid value: \"-bad\""):
        label_selector_from_object({"matchLabels": {"-bad": "x"}})
    with pytest.raises(SelectorError, match=r"^values\[0\]\[app\]: Invalid value: \"a b\""):
        label_selector_from_object({"matchLabels": {"app": "a b"}})


# ---------------------------------------------------------------- field selectors

def pod(name, node="", phase="Pending", ns="default", **spec):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"nodeName": node, **spec},
            "status": {"phase": phase} if phase else {}}


PODS = [pod("a", "n1", "Running"), pod("b", "n2", "Running"), pod("c", "", "Pending"),
        pod("d", "n1", "Succeeded", ns="kube-system")]


def select(text):
    fs = parse_field_selector(text, supported=supported_fields("Pod"))
    return [p["metadata"]["name"] for p in PODS if fs.matches(object_fields("Pod", p))]


@pytest.mark.parametrize("text,names", [
    ("spec.nodeName=n1", ["a", "d"]),
    ("spec.nodeName==n1", ["a", "d"]),
    ("spec.nodeName!=n1", ["b", "c"]),
    ("spec.nodeName=", ["c"]),                        # unscheduled pod: missing value is ""
    ("status.phase=Running", ["a", "b"]),
    ("status.phase!=Running", ["c", "d"]),
    ("status.phase=Running,spec.nodeName!=n2", ["a"]),
    ("spec.nodeName=n1,metadata.namespace=default", ["a"]),
    ("metadata.name=c", ["c"]),
    ("spec.host=n2", ["b"]),                          # legacy alias for spec.nodeName
    ("", ["a", "b", "c", "d"]),
])
def test_pod_field_selectors(text, names):
    assert select(text) == names


def test_requirements_normalise_operators():
    fs = parse_field_selector("status.phase!=Running,spec.nodeName==n1", supported=supported_fields("Pod"))
    assert fs.requirements() == (("spec.nodeName", "=", "n1"), ("status.phase", "!=", "Running"))
    assert isinstance(fs, FieldSelector) and not fs.empty


def test_unsupported_field_messages():
    with pytest.raises(SelectorError) as ei:
        parse_field_selector("spec.containers=x", supported=supported_fields("Pod"))
    assert str(ei.value) == "field label not supported: spec.containers"
    with pytest.raises(SelectorError) as ei:
        parse_field_selector("metadata.namespace=x", supported=supported_fields("Node"))
    assert str(ei.value) == "field label not supported: metadata.namespace"
    with pytest.raises(SelectorError) as ei:  # kinds with only the default conversion
        parse_field_selector("data.x=1", supported=supported_fields("ConfigMap"))
    assert str(ei.value) == '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'


@pytest.mark.parametrize("text,value", [
    (r"metadata.name=a\,b", "a,b"),
    (r"metadata.name=a\=b", "a=b"),
    (r"metadata.name=a\\b", "a\\b"),
])
def test_escaped_values(text, value):
    fs = parse_field_selector(text, supported=supported_fields("Pod"))
    assert fs.requirements() == (("metadata.name", "=", value),)
    assert fs.matches({"metadata.name": value}) and not fs.matches({"metadata.name": "a"})
    assert str(fs) == text


@pytest.mark.parametrize("text,msg", [
    ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    (r"metadata.name=a\!b", "invalid field selector: invalid escape sequence: \\!"),
    ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
    ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
])
def test_field_selector_syntax_errors(text, msg):
    with pytest.raises(SelectorError) as ei:
        parse_field_selector(text, supported=supported_fields("Pod"))
    assert str(ei.value) == msg


def test_object_fields_per_kind():
    f = object_fields("Pod", {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"hostNetwork": True},
                              "status": {"podIPs": [{"ip": "10.0.0.9"}]}})
    assert f["spec.hostNetwork"] == "true" and f["status.podIP"] == "10.0.0.9"
    assert f["spec.nodeName"] == "" and f["status.phase"] == "" and f["metadata.namespace"] == "ns"
    assert object_fields("Pod", {"metadata": {"name": "p"}})["spec.hostNetwork"] == "false"
    node = object_fields("Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}})
    assert node == {"metadata.name": "n", "spec.unschedulable": "true"}
    assert object_fields("Secret", {"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"})["type"] == "Opaque"
    assert object_fields("Namespace", {"metadata": {"name": "x"}, "status": {"phase": "Active"}}) == {
        "metadata.name": "x", "status.phase": "Active"}
    ev = object_fields("Event", {"metadata": {"name": "e", "namespace": "d"}, "reason": "Started",
                                 "involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}})
    assert ev["involvedObject.kind"] == "Pod" and ev["involvedObject.uid"] == "" and ev["source"] == "kubelet"
    assert ev["reason"] == "Started" and set(ev) == supported_fields("Event")
    assert object_fields("ReplicaSet", {"metadata": {"name": "r"}})["status.replicas"] == "0"
    assert set(object_fields("ConfigMap", {"metadata": {"name": "c"}})) == supported_fields("ConfigMap")
