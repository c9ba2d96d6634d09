"""Label and field selectors, parsed and matched the way apimachinery does.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a` (exists), `!a`
(does not exist), `a>3` / `a<3` (integer comparisons), comma-separated, whitespace allowed.
Keys are qualified names and values label values, validated as upstream. The empty selector
matches everything.

Field selectors: `f=v`, `f==v`, `f!=v` comma-separated with `\\`-escapes; the fields a resource
supports are listed in FIELD_LABELS (metadata.name and metadata.namespace everywhere).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from controlplane import errors
from controlplane.resources import Resource
from controlplane.validation import label_value_errors, qualified_name_errors


class Operator(str, enum.Enum):
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", self._compile())

    def _compile(self) -> Callable[[Mapping[str, str]], bool]:
        """A predicate for this requirement (selectors run over every object of a list/watch)."""
        key, op, values = self.key, self.operator, frozenset(self.values)
        if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN):
            if len(values) == 1:
                (want,) = values
                return lambda labels: labels.get(key) == want
            return lambda labels: labels.get(key) in values
        if op in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return lambda labels: key not in labels or labels[key] not in values
        if op is Operator.EXISTS:
            return lambda labels: key in labels
        if op is Operator.DOES_NOT_EXIST:
            return lambda labels: key not in labels
        return self._compare

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self._test(labels)  # type: ignore[attr-defined,no-any-return]

    def _compare(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if self.key not in labels:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({','.join(self.values)})"
        if op is Operator.GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op is Operator.LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op.value}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# ------------------------------------------------------------------ label selector lexer/parser

_SPECIAL = "=!(),<>"


def _tokens(text: str) -> list[str]:
    """Split into identifiers and operator/punctuation tokens (`!=`, `==` as one token)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SPECIAL:
            two = text[i:i + 2]
            if two in ("!=", "=="):
                out.append(two)
                i += 2
            else:
                out.append(ch)
                i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _is_ident(tok: str | None) -> bool:
    return tok is not None and (tok == "" or tok[0] not in _SPECIAL)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0

    def fail(self, what: str) -> errors.BadRequest:
        return errors.BadRequest(f"unable to parse requirement: {what} (in label selector {self.text!r})")

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        while self.peek() is not None:
            reqs.append(self.requirement())
            tok = self.take()
            if tok is None:
                break
            if tok != ",":
                raise self.fail(f"found '{tok}', expected: ',' or 'end of string'")
            if self.peek() is None:
                raise self.fail("found 'end of string', expected: identifier")
        return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.key()
            return Requirement(key, Operator.DOES_NOT_EXIST)
        self.pos -= 1
        key = self.key()
        nxt = self.peek()
        if nxt is None or nxt == ",":
            return Requirement(key, Operator.EXISTS)
        op = self.operator()
        if op in (Operator.IN, Operator.NOT_IN):
            return Requirement(key, op, self.value_set())
        nxt = self.peek()
        if nxt is None or nxt == ",":
            value = ""  # `a=` selects an empty value, as upstream
        else:
            value = self.take() or ""
            if not _is_ident(value):
                raise self.fail(f"found '{value}', expected: identifier")
        if op in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if not _is_int(value):
                raise self.fail(f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}")
        else:
            _check_value(value, self)
        return Requirement(key, op, (value,))

    def key(self) -> str:
        tok = self.take()
        if tok is None or not _is_ident(tok):
            raise self.fail(f"found '{tok if tok is not None else 'end of string'}', expected: identifier")
        problems = qualified_name_errors(tok)
        if problems:
            raise self.fail(f"key: Invalid value: {tok!r}: {'; '.join(problems)}")
        return tok

    def operator(self) -> Operator:
        tok = self.take()
        table = {"=": Operator.EQUALS, "==": Operator.DOUBLE_EQUALS, "!=": Operator.NOT_EQUALS,
                 "in": Operator.IN, "notin": Operator.NOT_IN, ">": Operator.GREATER_THAN,
                 "<": Operator.LESS_THAN}
        if tok is None or tok not in table:
            raise self.fail(f"found '{tok if tok is not None else 'end of string'}', expected: "
                            "'=', '!=', '==', 'in', notin'")
        return table[tok]

    def value_set(self) -> tuple[str, ...]:
        tok = self.take()
        if tok != "(":
            raise self.fail(f"found '{tok if tok is not None else 'end of string'}', expected: '('")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self.take()
            if tok is None:
                raise self.fail("found 'end of string', expected: ')'")
            if tok == ")":
                if expect_value and values:
                    values.append("")
                break
            if tok == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if not _is_ident(tok) or not expect_value:
                raise self.fail(f"found '{tok}', expected: ',', ')' or identifier")
            _check_value(tok, self)
            values.append(tok)
            expect_value = False
        if not values:
            raise self.fail("for 'in', 'notin' operators, values set can't be empty")
        return tuple(sorted(set(values)))


def _is_int(value: str) -> bool:
    try:
        int(value)
        return True
    except ValueError:
        return False


def _check_value(value: str, parser: _Parser) -> None:
    problems = label_value_errors(value)
    if problems:
        raise parser.fail(f"values[0]: Invalid value: {value!r}: {'; '.join(problems)}")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a labelSelector query value; raises errors.BadRequest naming the bad text."""
    if not text or not text.strip():
        return LabelSelector()
    return _Parser(text).parse()


def selector_from_match_labels(match_labels: Mapping[str, str] | None) -> LabelSelector:
    """An equality selector from a map such as Service.spec.selector (empty map: everything)."""
    reqs = [Requirement(str(k), Operator.EQUALS, (str(v),)) for k, v in (match_labels or {}).items()]
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def selector_from_label_selector(sel: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector ({matchLabels, matchExpressions}) as a LabelSelector."""
    sel = sel or {}
    reqs = [Requirement(str(k), Operator.EQUALS, (str(v),)) for k, v in (sel.get("matchLabels") or {}).items()]
    ops = {"In": Operator.IN, "NotIn": Operator.NOT_IN, "Exists": Operator.EXISTS,
           "DoesNotExist": Operator.DOES_NOT_EXIST}
    for expr in sel.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise errors.BadRequest(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(str(expr.get("key", "")), op, tuple(sorted(map(str, expr.get("values") or ())))))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# ------------------------------------------------------------------ field selectors

def _path(*keys: str) -> Callable[[Mapping[str, Any]], str]:
    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for k in keys:
            cur = cur.get(k) if isinstance(cur, Mapping) else None
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)
    return get


_COMMON: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

FIELD_LABELS: dict[str, dict[str, Callable[[Mapping[str, Any]], str]]] = {
    "Pod": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "Namespace": {"status.phase": _path("status", "phase")},
    "Node": {"spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable") else "false"},
    "Service": {"spec.clusterIP": _path("spec", "clusterIP"), "spec.type": _path("spec", "type")},
    "EndpointSlice": {"addressType": _path("addressType")},
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negate: bool

    def matches(self, obj: Mapping[str, Any], getter: Callable[[Mapping[str, Any]], str]) -> bool:
        return (getter(obj) == self.value) != self.negate


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()
    kind: str = ""

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj, field_getter(self.kind, r.field)) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact_name(self) -> str | None:
        """The name pinned by `metadata.name=X`, if any (lets a store do a point lookup)."""
        for r in self.requirements:
            if r.field == "metadata.name" and not r.negate:
                return r.value
        return None


def field_getter(kind: str, field: str) -> Callable[[Mapping[str, Any]], str]:
    getter = _COMMON.get(field) or FIELD_LABELS.get(kind, {}).get(field)
    if getter is None:
        raise errors.BadRequest(f"field label not supported: {field}")
    return getter


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str, whole: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise errors.BadRequest(f"invalid field selector: {whole!r}: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise errors.BadRequest(f"invalid field selector: {whole!r}: unescaped {ch!r} in {value!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def _field_requirement(part: str, whole: str) -> FieldRequirement:
    for op in ("!=", "==", "="):
        idx = _find_unescaped(part, op)
        if idx >= 0:
            field, value = part[:idx].strip(), part[idx + len(op):]
            if not field:
                raise errors.BadRequest(f"invalid field selector: {whole!r}: missing field name in {part!r}")
            return FieldRequirement(field, _unescape(value, whole), op == "!=")
    raise errors.BadRequest(f"invalid selector: '{whole}'; can't understand '{part}'")


def _find_unescaped(text: str, op: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            return i
        i += 1
    return -1


def parse_field_selector(text: str, resource: Resource | None = None) -> FieldSelector:
    """Parse a fieldSelector for `resource`; unsupported fields -> BadRequest `field label not supported`."""
    if not text or not text.strip():
        return FieldSelector(kind=resource.kind if resource else "")
    kind = resource.kind if resource else ""
    reqs = []
    for part in _split_unescaped(text, ","):
        if not part.strip():
            continue
        req = _field_requirement(part, text)
        field_getter(kind, req.field)
        reqs.append(req)
    return FieldSelector(tuple(reqs), kind)
