"""Shared validation helpers: name/label/IP/port checks with kube-apiserver's messages, and the
builders of `Cause`s (field path, message, reason) every kind's rules use."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from typing import Any, Callable, Iterable, Iterator, Mapping

from controlplane.errors import Cause

JSON = dict[str, Any]
_SCALARS = (str, int, float, bool, type(None))


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars): ~4x faster than copy.deepcopy."""
    t = type(value)
    if t is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if t is list:
        return [copy_json(v) for v in value]
    if t in _SCALARS:
        return value
    return copy.deepcopy(value)


# ------------------------------------------------------------------ name and value checks

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")

DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                     "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                     "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                         "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                         "regex used for validation is "
                         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                     "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                     "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
QUALIFIED_NAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                      "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
                      "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                   "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                   "'my_value',  or '12345', regex used for validation is "
                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _max_len(value: str, n: int) -> list[str]:
    return [f"must be no more than {n} characters"] if len(value) > n else []


def dns1123_label_errors(value: str) -> list[str]:
    return _max_len(value, 63) + ([] if _DNS1123_LABEL.match(value) else [DNS1123_LABEL_MSG])


def dns1123_subdomain_errors(value: str) -> list[str]:
    return _max_len(value, 253) + ([] if _DNS1123_SUBDOMAIN.match(value) else [DNS1123_SUBDOMAIN_MSG])


def dns1035_label_errors(value: str) -> list[str]:
    return _max_len(value, 63) + ([] if _DNS1035_LABEL.match(value) else [DNS1035_LABEL_MSG])


def qualified_name_errors(value: str) -> list[str]:
    """A label/annotation key: [prefix/]name, prefix a DNS subdomain, name <= 63 characters."""
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
    else:
        return ["a qualified name " + QUALIFIED_NAME_MSG.removeprefix("name part ")
                .replace("(e.g.", "with an optional DNS subdomain prefix and '/' (e.g.")]
    out: list[str] = []
    if prefix:
        out += ["prefix part " + m for m in dns1123_subdomain_errors(prefix)]
    if not name:
        return out + ["name part must be non-empty"]
    if len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.match(name):
        out.append(QUALIFIED_NAME_MSG)
    return out


def label_value_errors(value: str) -> list[str]:
    return _max_len(value, 63) + ([] if _LABEL_VALUE.match(value) else [LABEL_VALUE_MSG])


def iana_svc_name_errors(value: str) -> list[str]:
    out = _max_len(value, 15)
    if not _IANA_SVC_NAME.match(value):
        out.append("must contain only alphanumeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        out.append("must not contain consecutive hyphens")
    if not any(c.isalpha() for c in value):
        out.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out


def port_number_errors(value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return [PORT_RANGE_MSG]
    return []


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


# ------------------------------------------------------------------ cause builders

def fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[]string{" + ", ".join(fmt_value(v) for v in value) + "}"
    return str(value)


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {fmt_value(value)}: {detail}", "FieldValueInvalid")


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, f"Required value: {detail}" if detail else "Required value", "FieldValueRequired")


def duplicate(path: str, value: Any) -> Cause:
    return Cause(path, f"Duplicate value: {fmt_value(value)}", "FieldValueDuplicate")


def not_supported(path: str, value: Any, supported: Iterable[str]) -> Cause:
    opts = ", ".join(fmt_value(s) for s in sorted(supported))
    return Cause(path, f"Unsupported value: {fmt_value(value)}: supported values: {opts}", "FieldValueNotSupported")


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def too_many(path: str, actual: int, limit: int) -> Cause:
    return Cause(path, f"Too many: {actual}: must have at most {limit} items", "FieldValueTooMany")


def too_long(path: str, limit: int) -> Cause:
    return Cause(path, f"Too long: must have at most {limit} bytes", "FieldValueTooLong")


def _each(value: str, path: str, problems: list[str]) -> Iterator[Cause]:
    for p in problems:
        yield invalid(path, value, p)


def _h(v: Any) -> Any:
    """A hashable stand-in for a value used in a duplicate check (garbage input may be a map)."""
    try:
        hash(v)
        return v
    except TypeError:
        return json.dumps(v, sort_keys=True, default=str)


def _dict(v: Any) -> JSON:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


# ------------------------------------------------------------------ rule helpers

Rule = Callable[[Mapping[str, Any], "Mapping[str, Any] | None"], Iterable[Cause]]

PROTOCOLS = ("TCP", "UDP", "SCTP")
_ANNOTATIONS_MAX = 256 * 1024


def _protocol_causes(path: str, proto: Any) -> Iterator[Cause]:
    if not proto:
        yield required(path)
    elif proto not in PROTOCOLS:
        yield not_supported(path, proto, PROTOCOLS)


def _label_causes(labels: Any, path: str) -> Iterator[Cause]:
    if labels is None:
        return
    if not isinstance(labels, dict):
        yield invalid(path, labels, "must be a map of strings")
        return
    for k, v in labels.items():
        yield from _each(k, path, qualified_name_errors(k))
        if not isinstance(v, str):
            yield invalid(path, v, "label values must be strings")
        else:
            yield from _each(v, path, label_value_errors(v))


def _annotation_causes(annotations: Any, path: str) -> Iterator[Cause]:
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        yield invalid(path, annotations, "must be a map of strings")
        return
    total = 0
    for k, v in annotations.items():
        yield from _each(k.lower(), path, qualified_name_errors(k.lower()))
        if not isinstance(v, str):
            yield invalid(path, v, "annotation values must be strings")
        else:
            total += len(k) + len(v)
    if total > _ANNOTATIONS_MAX:
        yield too_long(path, _ANNOTATIONS_MAX)
