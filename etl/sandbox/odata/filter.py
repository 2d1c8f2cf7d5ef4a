"""``$filter``: parsed by the ``odata-query`` package, evaluated here against one record at a
time (a mapping), with the semantics listed in the package docstring."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from etl.sandbox.core import BRT

Path = tuple[str, ...]


class FilterError(ValueError):
    """A query option that cannot be parsed or evaluated; the message names the problem."""


def to_instant(value: datetime | date | str) -> datetime:
    """An aware UTC datetime truncated to the millisecond. Naive values are Brasília time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise FilterError(f"{value!r} is not an ISO 8601 date/time") from exc
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=BRT)
    if value.tzinfo is None:
        value = value.replace(tzinfo=BRT)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}

_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


def _str_fn(fn: Callable[[str, str], Any]) -> Callable[[list[Any]], Any]:
    def call(args: list[Any]) -> Any:
        a, b = args
        if a is None or b is None:
            return None
        if not isinstance(a, str) or not isinstance(b, str):
            raise FilterError("string functions need string arguments")
        return fn(a, b)

    return call


def _unary_str(fn: Callable[[str], Any]) -> Callable[[list[Any]], Any]:
    def call(args: list[Any]) -> Any:
        (a,) = args
        if a is None:
            return None
        if not isinstance(a, str):
            raise FilterError("string functions need a string argument")
        return fn(a)

    return call


def _date_part(attr: str) -> Callable[[list[Any]], Any]:
    def call(args: list[Any]) -> Any:
        (a,) = args
        if a is None:
            return None
        return getattr(to_instant(a).astimezone(BRT), attr)

    return call


_FUNCTIONS: dict[str, Callable[[list[Any]], Any]] = {
    "contains": _str_fn(lambda a, b: b in a),
    "startswith": _str_fn(str.startswith),
    "endswith": _str_fn(str.endswith),
    "indexof": _str_fn(str.find),
    "concat": _str_fn(operator.add),
    "tolower": _unary_str(str.lower),
    "toupper": _unary_str(str.upper),
    "trim": _unary_str(str.strip),
    "length": _unary_str(len),
    "year": _date_part("year"),
    "month": _date_part("month"),
    "day": _date_part("day"),
    "hour": _date_part("hour"),
    "minute": _date_part("minute"),
    "second": _date_part("second"),
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime | date):
        return "datetime"
    return type(value).__name__


def _lookup(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    raise FilterError(f"cannot read property {name!r} of a {_kind(obj)} value")


@dataclass(frozen=True)
class Filter:
    """A parsed ``$filter``; ``matches(record)`` evaluates it against one record mapping."""

    text: str
    tree: Any

    def matches(self, record: Mapping[str, Any]) -> bool:
        result = _Eval(record).run(self.tree, {})
        if result is None:
            return False
        if not isinstance(result, bool):
            raise FilterError(f"$filter {self.text!r} is not a true/false expression")
        return result

    def lower_bound(self, name: str) -> datetime | None:
        """An instant every matching record's ``name`` is at or after (None if unknown); lets a
        caller skip records cheaply before evaluating the filter."""
        return _lower_bound(self.tree, name)

    def key_set(self, name: str) -> set[Any] | None:
        """The only values ``name`` can have in a matching record (None if unrestricted)."""
        return _key_set(self.tree, name)

    def candidates(self, index_of: Callable[[str], Any], *,
                   every: Callable[[], set[int]] | None = None,
                   instants: frozenset[str] = frozenset()) -> set[int] | None:
        """Ids of the only records that can match, or raise, when evaluated in id order (None:
        any record can). ``index_of(name)`` gives a :class:`etl.sandbox.index.FieldIndex` of
        a field or None; ``eq``/``in`` on indexed fields narrow, ``or`` when both sides narrow,
        ``and`` by its left side, or by its right when its left cannot raise. With ``every``
        (the ids of all records), ``ne`` a literal and ``eq null`` narrow too. ``instants``:
        fields every record holds as an instant (comparing them with a date never raises)."""
        return _candidates(self.tree, index_of, every, instants)

    def paths(self) -> set[Path]:
        """The record property paths the filter reads (lambda variables excluded)."""
        found: set[Path] = set()
        _collect_paths(self.tree, frozenset(), found)
        return found


def parse_filter(text: str) -> Filter:
    """Parse ``$filter`` text; raises :class:`FilterError` naming the problem."""
    tree = _plain_tree(text)
    if tree is not None:
        return Filter(text, tree)
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(text))
    except ODataException as exc:
        raise FilterError(f"invalid $filter {text!r}: {exc}") from exc
    if tree is None:
        raise FilterError("empty $filter")
    return Filter(text, tree)


# --- the plain filters, parsed without the package's parser -------------------------------------
# Most filters a client sends are field-to-literal comparisons joined by ``and``/``or`` in
# parentheses: a search by natural key is fifty of them (``Register eq '…' or CNPJ eq '…' or …``)
# and the package's LALR parser takes ~1.7 ms over one, in the event loop every simulator
# answer waits on. Such a text is parsed here into the very tree the package builds (the
# tests check it tree for tree against the package); anything else goes to the package.

_PLAIN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<field>[A-Za-z_]\w{0,127})\s+(?P<op>eq|ne|gt|ge|lt|le)\s+
    (?P<lit>'(?:[^']|'')*'|\d+|null)(?=\s|\)|\Z)
  | (?P<bool>and|or)(?=\s)
""", re.VERBOSE)
_PLAIN_OPS: dict[str, type[ast._Comparator]] = {
    "eq": ast.Eq, "ne": ast.NotEq, "gt": ast.Gt, "ge": ast.GtE, "lt": ast.Lt, "le": ast.LtE}
# names the package's lexer reads as something else (a keyword, or a literal it begins with)
_NOT_PLAIN_NAMES = re.compile(r"(?i)(?:null|true|false|any|all|not|geography|duration)|"
                              r"(?:and|or|eq|ne|gt|ge|lt|le|in|add|sub|mul|div|mod)$")


def _plain_tree(text: str) -> Any:
    """The tree of a plain filter (see above), or None for the package to parse."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _PLAIN.match(text, pos)
        if m is None:
            return None
        field, lit = m["field"], m["lit"]
        if field is not None:
            if _NOT_PLAIN_NAMES.match(field):
                return None
            value: Any = ast.Integer(lit)
            if lit == "null":
                value = ast.Null()
            elif lit[0] == "'":
                value = ast.String(lit[1:-1].replace("''", "'"))
            tokens.append(("cmp", ast.Compare(_PLAIN_OPS[m["op"]](), ast.Identifier(field),
                                              value)))
        else:
            tokens.append((str(m.lastgroup), m[0]))
        pos = m.end()
    # whitespace: only around and/or (which need it), after "(" and before ")"
    for i, (kind, _) in enumerate(tokens):
        before = tokens[i - 1][0] if i else None
        after = tokens[i + 1][0] if i + 1 < len(tokens) else None
        if kind == "bool" and (before != "ws" or after != "ws"):
            return None
        if kind == "ws" and not (before in ("open", "bool") or after in ("close", "bool")):
            return None
    return _PlainParser([t for t in tokens if t[0] != "ws"]).parse()


class _PlainParser:
    """``or`` of ``and`` of comparisons or parenthesized filters, both left-associative."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.at = 0

    def parse(self) -> Any:
        tree = self._either()
        return tree if tree is not None and self.at == len(self.tokens) else None

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _either(self) -> Any:
        return self._joined("or", ast.Or, self._both)

    def _both(self) -> Any:
        return self._joined("and", ast.And, self._one)

    def _joined(self, word: str, op: type[ast._BoolOpToken], part: Callable[[], Any]) -> Any:
        tree = part()
        while tree is not None and self._peek() == ("bool", word):
            self.at += 1
            right = part()
            if right is None:
                return None
            tree = ast.BoolOp(op(), tree, right)
        return tree

    def _one(self) -> Any:
        token = self._peek()
        if token is None:
            return None
        self.at += 1
        if token[0] == "cmp":
            return token[1]
        if token[0] != "open":
            return None
        tree = self._either()
        if tree is None or self._peek() != ("close", ")"):
            return None
        self.at += 1
        return tree


def _lower_bound(node: Any, name: str) -> datetime | None:
    if isinstance(node, ast.BoolOp):
        left, right = _lower_bound(node.left, name), _lower_bound(node.right, name)
        if isinstance(node.op, ast.And):
            return max((b for b in (left, right) if b is not None), default=None)
        return min(left, right) if left is not None and right is not None else None
    if (isinstance(node, ast.Compare)
            and isinstance(node.comparator, ast.Gt | ast.GtE | ast.Eq)
            and _path_of(node.left) == (name,)
            and isinstance(node.right, ast.DateTime | ast.Date)):
        return to_instant(node.right.py_val)
    return None


def _key_set(node: Any, name: str) -> set[Any] | None:
    if isinstance(node, ast.BoolOp):
        left, right = _key_set(node.left, name), _key_set(node.right, name)
        if isinstance(node.op, ast.And):
            if left is None or right is None:
                return left if right is None else right
            return left & right
        return left | right if left is not None and right is not None else None
    if isinstance(node, ast.Compare) and _path_of(node.left) == (name,):
        if isinstance(node.comparator, ast.Eq) and isinstance(node.right, ast.Integer):
            return {node.right.py_val}
        if isinstance(node.comparator, ast.In) and isinstance(node.right, ast.List) and all(
                isinstance(v, ast.Integer) for v in node.right.val):
            return {v.py_val for v in node.right.val}
    return None


def _candidates(node: Any, index_of: Callable[[str], Any],
                every: Callable[[], set[int]] | None, instants: frozenset[str]
                ) -> set[int] | None:
    if isinstance(node, ast.BoolOp):
        left = _candidates(node.left, index_of, every, instants)
        if isinstance(node.op, ast.And):  # its right is evaluated only where its left holds:
            if left is None and _never_raises(node.left, instants):  # narrowed by its right
                return _candidates(node.right, index_of, every, instants)  # only when its
            return left  # left cannot raise on the records left out
        if left is None:
            return None
        right = _candidates(node.right, index_of, every, instants)
        return None if right is None else left | right
    if not isinstance(node, ast.Compare):
        return None
    path = _path_of(node.left)
    if path is None or len(path) != 1:
        return None
    literals = (ast.String, ast.Integer, ast.Float)
    if isinstance(node.comparator, ast.Eq) and isinstance(node.right, literals):
        index = index_of(path[0])
        return None if index is None else index.equal(node.right.py_val)
    if (isinstance(node.comparator, ast.In) and isinstance(node.right, ast.List)
            and all(isinstance(v, literals) for v in node.right.val)):
        index = index_of(path[0])
        return None if index is None else index.among([v.py_val for v in node.right.val])
    if every is not None and isinstance(node.comparator, ast.NotEq) and isinstance(
            node.right, literals) and (index := index_of(path[0])) is not None:
        same: set[int] | None = index.exactly(node.right.py_val)
        return None if same is None else every() - same
    if every is not None and isinstance(node.comparator, ast.Eq) and isinstance(
            node.right, ast.Null) and (index := index_of(path[0])) is not None:
        valued: set[int] = index.valued()
        return every() - valued
    return None


def _never_raises(node: Any, instants: frozenset[str]) -> bool:
    """Comparisons of instant fields with date literals, joined by and/or: true or false on
    every record, never an error."""
    if isinstance(node, ast.BoolOp):
        return _never_raises(node.left, instants) and _never_raises(node.right, instants)
    return (isinstance(node, ast.Compare) and not isinstance(node.comparator, ast.In)
            and _path_of(node.left) in {(name,) for name in instants}
            and isinstance(node.right, ast.DateTime | ast.Date))


def _path_of(node: Any) -> Path | None:
    if isinstance(node, ast.Identifier):
        return (node.name,)
    if isinstance(node, ast.Attribute):
        owner = _path_of(node.owner)
        return None if owner is None else (*owner, node.attr)
    return None


def _collect_paths(node: Any, scope: frozenset[str], found: set[Path]) -> None:
    path = _path_of(node)
    if path is not None:
        if path[0] not in scope:
            found.add(path)
        return
    if isinstance(node, ast.CollectionLambda):
        _collect_paths(node.owner, scope, found)
        if node.lambda_ is not None:
            inner = scope | {node.lambda_.identifier.name}
            _collect_paths(node.lambda_.expression, inner, found)
        return
    if isinstance(node, ast.Call):
        for arg in node.args:
            _collect_paths(arg, scope, found)
        return
    for attr in ("left", "right", "operand"):
        child = getattr(node, attr, None)
        if child is not None:
            _collect_paths(child, scope, found)
    if isinstance(node, ast.List):
        for item in node.val:
            _collect_paths(item, scope, found)


class _Eval:
    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record

    def run(self, node: Any, scope: dict[str, Any]) -> Any:
        if isinstance(node, ast.Identifier):
            if node.name in scope:
                return scope[node.name]
            return _lookup(self.record, node.name)
        if isinstance(node, ast.Attribute):
            return _lookup(self.run(node.owner, scope), node.attr)
        if isinstance(node, ast.DateTime | ast.Date):
            return to_instant(node.py_val)
        if isinstance(node, ast.List):
            return [self.run(v, scope) for v in node.val]
        if isinstance(node, ast.Null | ast.Integer | ast.Float | ast.Boolean | ast.String):
            return node.py_val
        if isinstance(node, ast.BoolOp):
            left = self.run(node.left, scope)
            if isinstance(node.op, ast.And):
                return bool(left) and bool(self.run(node.right, scope))
            return bool(left) or bool(self.run(node.right, scope))
        if isinstance(node, ast.UnaryOp):
            value = self.run(node.operand, scope)
            if isinstance(node.op, ast.Not):
                return not value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return -value
            raise FilterError("unary minus needs a number")
        if isinstance(node, ast.Compare):
            return self._compare(node, scope)
        if isinstance(node, ast.Call):
            name = node.func.name.lower()
            fn = _FUNCTIONS.get(name)
            if fn is None:
                raise FilterError(f"function {node.func.name!r} is not supported; "
                                  f"supported: {sorted(_FUNCTIONS)}")
            return fn([self.run(a, scope) for a in node.args])
        if isinstance(node, ast.BinOp):
            left, right = self.run(node.left, scope), self.run(node.right, scope)
            if left is None or right is None:
                return None
            if _kind(left) != "number" or _kind(right) != "number":
                raise FilterError("arithmetic needs numbers")
            try:
                return _ARITH[type(node.op)](left, right)
            except ZeroDivisionError as exc:
                raise FilterError("division by zero") from exc
        if isinstance(node, ast.CollectionLambda):
            return self._lambda(node, scope)
        raise FilterError(f"unsupported expression {type(node).__name__}")

    def _lambda(self, node: ast.CollectionLambda, scope: dict[str, Any]) -> bool:
        items = self.run(node.owner, scope)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise FilterError("any()/all() need a collection property")
        if node.lambda_ is None:
            return bool(items) if isinstance(node.operator, ast.Any) else True
        var = node.lambda_.identifier.name
        results = (
            bool(self.run(node.lambda_.expression, {**scope, var: item})) for item in items
        )
        return any(results) if isinstance(node.operator, ast.Any) else all(results)

    def _compare(self, node: ast.Compare, scope: dict[str, Any]) -> bool:
        left = self.run(node.left, scope)
        right = self.run(node.right, scope)
        if isinstance(node.comparator, ast.In):
            if not isinstance(right, list):
                raise FilterError("'in' needs a list on its right")
            return any(_coerced_eq(left, r) for r in right)
        op = _COMPARE[type(node.comparator)]
        if left is None or right is None:
            if isinstance(node.comparator, ast.Eq):
                return left is None and right is None
            if isinstance(node.comparator, ast.NotEq):
                return not (left is None and right is None)
            return False
        left, right = _coerce(left, right, node)
        return bool(op(left, right))


def _coerce(left: Any, right: Any, node: Any) -> tuple[Any, Any]:
    if isinstance(left, datetime) and not isinstance(right, datetime):
        right = to_instant(right) if isinstance(right, str | date) else right
    elif isinstance(right, datetime) and not isinstance(left, datetime):
        left = to_instant(left) if isinstance(left, str | date) else left
    if _kind(left) != _kind(right):
        where = _path_of(node.left) or _path_of(node.right)
        name = "/".join(where) if where else "expression"
        raise FilterError(
            f"cannot compare {name} ({_kind(left)}) with a {_kind(right)} value"
        )
    return left, right


def _coerced_eq(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, datetime) or isinstance(right, datetime):
        return bool(to_instant(left) == to_instant(right))
    return bool(left == right)
