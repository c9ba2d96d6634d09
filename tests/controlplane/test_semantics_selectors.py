"""Label and field selectors: parsing, matching and errors, table-driven."""

from __future__ import annotations

import pytest

from controlplane import errors
from controlplane.resources import NODES, PODS, SERVICES
from controlplane.selectors import (
    Operator, parse_field_selector, parse_label_selector, selector_from_label_selector, selector_from_match_labels,
)

WEB = {"app": "web", "tier": "front", "env": "prod"}
DB = {"app": "db", "tier": "back"}
NONE: dict[str, str] = {}

LABEL_CASES = [
    # (selector, matches WEB, matches DB, matches NONE)
    ("", True, True, True),
    ("   ", True, True, True),
    ("app=web", True, False, False),
    ("app==web", True, False, False),
    ("app = web", True, False, False),
    ("app!=web", False, True, True),
    ("app in (web,db)", True, True, False),
    ("app in (web, db)", True, True, False),
    ("app in(web)", True, False, False),
    ("app notin (web)", False, True, True),
    ("env", True, False, False),
    ("!env", False, True, True),
    ("! env", False, True, True),
    ("app=web,tier=front", True, False, False),
    ("app=web, tier=back", False, False, False),
    ("tier in (front,back),!env", False, True, False),
    ("app,tier", True, True, False),
    ("example.com/app", False, False, False),
    ("env=", False, False, False),
    ("app in (web,)", True, False, False),
    ("tier notin (front,back)", False, False, True),
]


@pytest.mark.parametrize("text,web,db,none", LABEL_CASES)
def test_label_selector_matches(text: str, web: bool, db: bool, none: bool) -> None:
    sel = parse_label_selector(text)
    assert (sel.matches(WEB), sel.matches(DB), sel.matches(NONE)) == (web, db, none)


def test_empty_value_selects_empty_label() -> None:
    sel = parse_label_selector("a=,b=x")
    assert sel.matches({"a": "", "b": "x"})
    assert not sel.matches({"a": "1", "b": "x"})


def test_gt_lt() -> None:
    assert parse_label_selector("n>3").matches({"n": "4"})
    assert not parse_label_selector("n>3").matches({"n": "3"})
    assert parse_label_selector("n<3").matches({"n": "2"})
    assert not parse_label_selector("n<3").matches({"x": "2"})


def test_requirements_sorted_and_str_round_trip() -> None:
    sel = parse_label_selector("z=1, a in (y,x), !b, c")
    assert [r.key for r in sel.requirements] == ["a", "b", "c", "z"]
    assert sel.requirements[0].operator is Operator.IN
    assert sel.requirements[0].values == ("x", "y")
    again = parse_label_selector(str(sel))
    assert again == sel


BAD_LABEL = [
    ("app=web,", "end of string"),
    ("=web", "expected: identifier"),
    ("app in web", "expected: '('"),
    ("app in (web", "expected: ')'"),
    ("app in ()", "can't be empty"),
    ("app=we b", "expected: ',' or 'end of string'"),
    ("app=web)", "expected: ',' or 'end of string'"),
    ("-bad=x", "name part must consist"),
    ("app=-bad", "a valid label must be"),
    ("a" * 64 + "=x", "no more than 63"),
    ("app=" + "v" * 64, "no more than 63"),
    ("Bad_Prefix/x=1", "prefix part"),
    ("a/b/c=1", "qualified name"),
    ("n>x", "must be an integer"),
    ("app ~ web", "expected"),
    (",", "expected: identifier"),
]


@pytest.mark.parametrize("text,fragment", BAD_LABEL)
def test_label_selector_errors(text: str, fragment: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        parse_label_selector(text)
    assert fragment in info.value.message
    assert info.value.code == 400
    assert repr(text) in info.value.message  # names the bad text


def test_match_labels_helpers() -> None:
    assert selector_from_match_labels({"app": "web"}).matches(WEB)
    assert not selector_from_match_labels({"app": "web"}).matches(DB)
    assert selector_from_match_labels({}).matches(DB)
    sel = selector_from_label_selector({"matchLabels": {"app": "web"},
                                        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]},
                                                             {"key": "x", "operator": "DoesNotExist"}]})
    assert sel.matches(WEB) and not sel.matches(DB)
    with pytest.raises(errors.BadRequest):
        selector_from_label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})


POD = {"metadata": {"name": "web-1", "namespace": "default"},
       "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "serviceAccountName": "default"},
       "status": {"phase": "Running", "podIP": "10.244.1.5"}}

FIELD_CASES = [
    ("", True),
    ("metadata.name=web-1", True),
    ("metadata.name==web-1", True),
    ("metadata.name!=web-1", False),
    ("metadata.namespace=default", True),
    ("metadata.namespace=kube-system", False),
    ("spec.nodeName=n1", True),
    ("spec.nodeName=n2", False),
    ("spec.nodeName!=", True),
    ("status.phase=Running,spec.nodeName=n1", True),
    ("status.phase=Running, spec.nodeName=n2", False),
    ("status.podIP=10.244.1.5", True),
    ("spec.restartPolicy=Always", True),
    ("spec.schedulerName=default-scheduler", True),
    ("spec.serviceAccountName=default", True),
]


@pytest.mark.parametrize("text,expected", FIELD_CASES)
def test_field_selector_pods(text: str, expected: bool) -> None:
    assert parse_field_selector(text, PODS).matches(POD) is expected


def test_field_selector_unscheduled_pod() -> None:
    pending = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}, "status": {"phase": "Pending"}}
    assert parse_field_selector("spec.nodeName=", PODS).matches(pending)
    assert not parse_field_selector("spec.nodeName!=", PODS).matches(pending)


def test_field_selector_escapes() -> None:
    obj = {"metadata": {"name": "a,b=c", "namespace": "x"}}
    assert parse_field_selector(r"metadata.name=a\,b\=c", SERVICES).matches(obj)
    with pytest.raises(errors.BadRequest):
        parse_field_selector(r"metadata.name=a\qb", SERVICES)


def test_field_selector_exact_name() -> None:
    assert parse_field_selector("metadata.name=x", SERVICES).exact_name() == "x"
    assert parse_field_selector("metadata.name!=x", SERVICES).exact_name() is None


@pytest.mark.parametrize("text,resource,fragment", [
    ("spec.nodeName=n1", SERVICES, "field label not supported: spec.nodeName"),
    ("status.foo=1", PODS, "field label not supported: status.foo"),
    ("spec.podCIDR=x", NODES, "field label not supported: spec.podCIDR"),
    ("metadata.name", PODS, "can't understand"),
    ("=x", PODS, "missing field name"),
])
def test_field_selector_errors(text: str, resource: object, fragment: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        parse_field_selector(text, resource)  # type: ignore[arg-type]
    assert fragment in info.value.message
    assert info.value.status()["code"] == 400
