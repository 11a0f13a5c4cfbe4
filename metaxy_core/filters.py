"""Filters: user predicates over a feature's columns, rendered for each engine.

A filter is a SQL expression string (``"split = 'train'"``) or a narwhals expression
(``nw.col("split") == "train"``). Strings are parsed (never spliced into SQL) as exactly one
expression in DuckDB's expression syntax and checked against an allow-list:

* column names of the filtered relation (unknown names are an error listing the available ones);
* literals (strings, numbers, ``TRUE``/``FALSE``, ``NULL``);
* comparisons (``= <> != < <= > >=``, ``IS [NOT] DISTINCT FROM``), ``AND``/``OR``/``NOT``,
  arithmetic (``+ - * /``) and string concatenation ``||``;
* ``IN (...)`` lists, ``BETWEEN``, ``LIKE``/``ILIKE`` with a string-literal pattern,
  ``IS [NOT] NULL``, ``IS [NOT] TRUE/FALSE``, ``CASE``, ``CAST(x AS <type>)`` / ``x::<type>`` to a
  basic type (text, integer, floating point, boolean, date, timestamp);
* the scalar functions in :data:`FUNCTIONS`.

Anything else (statements, ``;``, subqueries, table functions such as ``read_csv``, file or
catalog access, other functions) raises :class:`~metaxy_core.errors.FilterError`. Every SQL store
turns filters into predicates for its engine through :func:`compile_filters`; the in-memory store
translates the same checked expression to polars with :func:`polars_filters`, so one filter means
the same rows on every store.
"""

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import narwhals as nw
import polars as pl
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

from metaxy_core.errors import FilterError

DIALECTS = ("duckdb", "postgres", "clickhouse", "sqlite")
READ_DIALECT = "duckdb"
MAX_FILTER_LENGTH = 20_000
_DIALECT = Dialect.get_or_raise(READ_DIALECT)

FUNCTIONS = (
    "lower",
    "upper",
    "length",
    "trim",
    "substring",
    "starts_with",
    "ends_with",
    "contains",
    "regexp_matches",
    "coalesce",
    "nullif",
    "abs",
    "round",
    "if",
)
"""Scalar functions a filter may call."""

_CAST_TYPES: dict[exp.DataType.Type, pl.DataType] = {
    exp.DataType.Type.VARCHAR: pl.String(),
    exp.DataType.Type.TEXT: pl.String(),
    exp.DataType.Type.SMALLINT: pl.Int16(),
    exp.DataType.Type.INT: pl.Int32(),
    exp.DataType.Type.BIGINT: pl.Int64(),
    exp.DataType.Type.DOUBLE: pl.Float64(),
    exp.DataType.Type.FLOAT: pl.Float32(),
    exp.DataType.Type.BOOLEAN: pl.Boolean(),
    exp.DataType.Type.DATE: pl.Date(),
    exp.DataType.Type.TIMESTAMP: pl.Datetime("us"),
    exp.DataType.Type.TIMESTAMPNTZ: pl.Datetime("us"),
    exp.DataType.Type.TIMESTAMPTZ: pl.Datetime("us", "UTC"),
}

# Node type -> the arguments it may carry. Any other argument that is set (a subquery in IN, an
# ESCAPE clause, a FORMAT in CAST, a table qualifier on a column, ...) rejects the filter.
_BINARY = {"this", "expression"}
_ALLOWED: dict[type[exp.Expression], set[str]] = {
    exp.Column: {"this"},
    exp.Identifier: {"this", "quoted"},
    exp.Literal: {"this", "is_string"},
    exp.Boolean: {"this"},
    exp.Null: set(),
    exp.Paren: {"this"},
    exp.Neg: {"this"},
    exp.Not: {"this"},
    exp.And: _BINARY,
    exp.Or: _BINARY,
    exp.EQ: _BINARY,
    exp.NEQ: _BINARY,
    exp.GT: _BINARY,
    exp.GTE: _BINARY,
    exp.LT: _BINARY,
    exp.LTE: _BINARY,
    exp.NullSafeEQ: _BINARY,
    exp.NullSafeNEQ: _BINARY,
    exp.Add: _BINARY,
    exp.Sub: _BINARY,
    exp.Mul: _BINARY,
    exp.Div: _BINARY | {"typed", "safe"},
    exp.DPipe: _BINARY | {"safe"},
    exp.Is: _BINARY,
    exp.In: {"this", "expressions"},
    exp.Between: {"this", "low", "high"},
    exp.Like: _BINARY,
    exp.ILike: _BINARY,
    exp.Case: {"this", "ifs", "default"},
    exp.If: {"this", "true", "false"},
    exp.Cast: {"this", "to"},
    exp.DataType: {"this", "nested"},
    exp.Lower: {"this"},
    exp.Upper: {"this"},
    exp.Length: {"this", "binary"},
    exp.Trim: {"this"},
    exp.Substring: {"this", "start", "length"},
    exp.StartsWith: _BINARY,
    exp.EndsWith: _BINARY,
    exp.Contains: _BINARY,
    exp.RegexpLike: _BINARY,
    exp.Coalesce: {"this", "expressions"},
    exp.Nullif: _BINARY,
    exp.Abs: {"this"},
    exp.Round: {"this", "decimals"},
    exp.Array: {"expressions"},
}

# Nodes whose value can never be a condition: a filter that is one of these is a mistake.
_NOT_A_CONDITION = (
    exp.Literal,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Neg,
    exp.DPipe,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Trim,
    exp.Substring,
    exp.Abs,
    exp.Round,
    exp.Null,
)

_LITERAL_ARG = {
    exp.Like: "expression",
    exp.ILike: "expression",
    exp.StartsWith: "expression",
    exp.EndsWith: "expression",
    exp.RegexpLike: "expression",
}


def _hint(columns: Sequence[str]) -> str:
    user = [c for c in columns if not c.startswith("metaxy_")]
    shown = ", ".join(user[:40]) + (", ..." if len(user) > 40 else "")
    if len(user) < len(columns):
        shown += (", " if user else "") + "the metaxy_* system columns"
    return (
        f"Filters are expressions over the feature's columns ({shown}), e.g. \"split = 'train' AND "
        'frames > 10"; see the Filters section of the documentation for what is accepted.'
    )


def _snippet(node: exp.Expression) -> str:
    text = node.sql(dialect=READ_DIALECT)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checker:
    """Validates one parsed filter and resolves its column names against ``columns``."""

    def __init__(self, source: str, columns: Sequence[str]) -> None:
        self.source = source
        self.columns = list(columns)
        self.folded: dict[str, list[str]] = {}
        for c in self.columns:
            self.folded.setdefault(c.lower(), []).append(c)

    def fail(self, what: str) -> FilterError:
        return FilterError(f"Filter {self.source!r} is rejected: {what}. {_hint(self.columns)}")

    def resolve(self, name: str) -> str:
        if name in self.columns:
            return name
        # DuckDB matches identifiers case-insensitively; so do we, unless that is ambiguous.
        matches = self.folded.get(name.lower(), [])
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise FilterError(
                f"Filter {self.source!r}: column '{name}' is ambiguous, it matches {matches} that differ only in "
                'letter case. Quote the exact name, e.g. "' + matches[0] + '".'
            )
        raise FilterError(
            f"Filter {self.source!r}: unknown column '{name}'. Available columns: {', '.join(self.columns)}."
        )

    def check(self, tree: exp.Expression) -> exp.Expression:
        """``tree`` (freshly parsed, changed in place) checked, with every column quoted under its exact
        stored name and ``x NOT LIKE y`` spelled ``NOT x LIKE y``. Walks iteratively, so long
        ``AND`` chains cost linear time and no recursion."""
        nodes = list(tree.walk())
        for node in nodes:
            self._check_node(node)
        for node in nodes:
            if isinstance(node, exp.Column):
                resolved = exp.column(self.resolve(node.name), quoted=True)
                tree = resolved if node is tree else tree
                node.replace(resolved)
        for node in nodes:
            if node.args.get("negate") and isinstance(node, exp.Like | exp.ILike | exp.Is):
                node.set("negate", None)
                negated = exp.Not(this=node.copy())
                tree = negated if node is tree else tree
                node.replace(negated)
        return tree

    def _check_node(self, node: exp.Expression) -> None:
        allowed = _ALLOWED.get(type(node))
        if allowed is None:
            raise self.fail(self._describe(node))
        for arg, value in node.args.items():
            if (
                arg not in allowed
                and value not in (None, False, [])
                and not (arg == "negate" and value is True)
            ):
                raise self.fail(f"'{_snippet(node)}' uses {arg.upper()}, which filters do not support")
        if node.args.get("negate") and not isinstance(node, exp.Like | exp.ILike | exp.Is):
            raise self.fail(f"'{_snippet(node)}' uses NEGATE, which filters do not support")
        if isinstance(node, exp.Column) and node.args.get("table") is not None:
            raise self.fail(f"'{_snippet(node)}' is a qualified name; use plain column names")
        if isinstance(node, exp.DataType) and (node.this not in _CAST_TYPES or node.args.get("nested")):
            kinds = (
                "VARCHAR, TEXT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, BOOLEAN, DATE, TIMESTAMP, TIMESTAMPTZ"
            )
            raise self.fail(f"CAST to {_snippet(node)} is not supported (use one of {kinds})")
        literal_arg = _LITERAL_ARG.get(type(node))
        if literal_arg is not None:
            pattern = node.args.get(literal_arg)
            if not (isinstance(pattern, exp.Literal) and pattern.is_string):
                raise self.fail(f"the pattern of '{_snippet(node)}' must be a string literal")
            if isinstance(node, exp.Like | exp.ILike) and "\\" in pattern.this:
                raise self.fail(
                    f"the LIKE pattern {pattern.this!r} contains a backslash, whose meaning differs between "
                    "engines; match it with starts_with/ends_with/contains instead"
                )
        if isinstance(node, exp.Contains) and not isinstance(node.this, exp.Array):
            pattern = node.expression
            if not (isinstance(pattern, exp.Literal) and pattern.is_string):
                raise self.fail(f"the second argument of '{_snippet(node)}' must be a string literal")
        if isinstance(node, exp.Array) and not all(
            isinstance(e, exp.Literal | exp.Null | exp.Boolean | exp.Neg) for e in node.expressions
        ):
            raise self.fail(f"'{_snippet(node)}': list values must be literals")

    @staticmethod
    def _describe(node: exp.Expression) -> str:
        if isinstance(node, exp.Subquery | exp.Select | exp.Union | exp.Query):
            return f"'{_snippet(node)}' is a subquery; filters cannot read other tables"
        if isinstance(node, exp.Func):
            name = node.sql_name() if not isinstance(node, exp.Anonymous) else str(node.this)
            return f"function {name.lower()}() is not allowed (allowed functions: {', '.join(FUNCTIONS)})"
        if isinstance(node, exp.Placeholder | exp.Parameter):
            return f"'{_snippet(node)}' is a parameter placeholder; write the value itself"
        if isinstance(node, exp.Star):
            return "'*' is not a column"
        kind = type(node).__name__.upper()
        return f"'{_snippet(node)}' ({kind}) is not allowed in a filter"


def parse_filter(text: str, columns: Sequence[str]) -> exp.Expression:
    """Parse one filter string into a checked sqlglot expression over ``columns``.

    Raises :class:`FilterError` for anything but a single allowed expression.
    """
    if not isinstance(text, str):
        raise FilterError(f"A filter must be a string or a narwhals expression, got {type(text).__name__}.")
    checker = _Checker(text, columns)
    if not text.strip():
        raise FilterError(f"Filter {text!r} is empty. {_hint(list(columns))}")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"A filter of {len(text)} characters is too long (at most {MAX_FILTER_LENGTH}).")
    try:
        tokens = _DIALECT.tokenize(text)
        if any(t.token_type == TokenType.SEMICOLON for t in tokens):
            raise checker.fail("it contains ';' (a filter is one expression, never several statements)")
        parsed = _DIALECT.parser().parse(tokens, text)
    except FilterError:
        raise
    except Exception as exc:  # sqlglot raises several error types (parse, tokenize, recursion)
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        raise FilterError(
            f"Filter {text!r} is not a valid expression: {reason}. {_hint(list(columns))}"
        ) from None
    statements = [p for p in parsed if p is not None]
    if len(statements) != 1 or len(parsed) != 1:
        raise checker.fail("it holds more than one statement (';' is not allowed)")
    tree = statements[0]
    try:
        checked = checker.check(tree)
    except RecursionError:
        raise FilterError(f"Filter {text[:80]!r}... nests too deeply.") from None
    return checked


def _check_condition(tree: exp.Expression, source: str, schema: Mapping[str, pl.DataType]) -> exp.Expression:
    """Reject a filter that is plainly a value (``1``, ``a + 1``, a non-boolean column)."""
    checker = _Checker(source, list(schema))
    root = tree.unnest()
    if isinstance(root, exp.Column):
        dtype = schema.get(root.name)
        if dtype is not None and dtype not in (pl.Boolean, pl.Null):
            raise checker.fail(
                f"column '{root.name}' has type {dtype}; a filter must be a condition (true or false)"
            )
    if isinstance(root, _NOT_A_CONDITION) or (
        isinstance(root, exp.Cast) and root.to.this != exp.DataType.Type.BOOLEAN
    ):
        raise checker.fail(f"'{_snippet(root)}' is a value, not a condition (true or false)")
    return tree


# -- narwhals expressions -------------------------------------------------------------------------
_lock = threading.Lock()
_connection: tuple[int, Any] | None = None


def _narwhals_sql(expr: Any, schema: Mapping[str, pl.DataType]) -> exp.Expression:
    """The WHERE predicate DuckDB's narwhals backend writes for ``expr``, parsed.

    The expression is applied to an empty DuckDB relation with the filtered relation's schema,
    so no data is read; its SQL then goes through the same allow-list as filter strings.
    """
    import duckdb

    global _connection
    columns = list(schema)
    with _lock:
        # one scratch connection per process (a connection must not cross a fork)
        if _connection is None or _connection[0] != os.getpid():
            _connection = (os.getpid(), duckdb.connect(":memory:"))
        cursor = _connection[1].cursor()
    try:
        empty = pl.DataFrame(schema=dict(schema)).to_arrow()
        relation = cursor.from_arrow(empty)
        try:
            sql = nw.from_native(relation).filter(expr).to_native().sql_query()
        except Exception as exc:
            raise FilterError(
                f"The narwhals filter {expr!r} cannot be applied: {str(exc).splitlines()[0].rstrip('.')}. "
                f"{_hint(columns)}"
            ) from None
    finally:
        cursor.close()
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise FilterError(
            f"The narwhals filter {expr!r} cannot be translated for SQL stores ({str(exc).splitlines()[0]}); "
            f"write it as a filter string. {_hint(columns)}"
        ) from None
    where = tree.args.get("where") if isinstance(tree, exp.Select) else None
    source = tree.args.get("from_") or tree.args.get("from")
    # A row-wise filter is exactly ``SELECT * FROM <relation> WHERE ...``; window functions and
    # aggregations make narwhals wrap the relation in a subquery.
    plain = (
        source is not None
        and isinstance(source.this, exp.Table)
        and len(tree.expressions) == 1
        and isinstance(tree.expressions[0], exp.Star)
        and not any(tree.expressions[0].args.values())
    )
    if (
        where is None
        or not plain
        or tree.args.get("group") is not None
        or tree.args.get("qualify") is not None
    ):
        raise FilterError(
            f"The narwhals filter {expr!r} is not a row-wise condition (aggregations and window functions are not "
            f"supported). {_hint(columns)}"
        )
    return _Checker(repr(expr), columns).check(where.this)


def _as_tree(f: Any, schema: Mapping[str, pl.DataType]) -> exp.Expression:
    if isinstance(f, str):
        return _check_condition(parse_filter(f, list(schema)), f, schema)
    if isinstance(f, nw.Expr):
        return _check_condition(_narwhals_sql(f, schema), repr(f), schema)
    raise FilterError(
        f"A filter must be a SQL expression string or a narwhals expression, got {type(f).__name__}: {f!r}."
    )


# -- rendering per SQL dialect --------------------------------------------------------------------
def _portable(node: exp.Expression) -> exp.Expression:
    """Rewrite DuckDB-only spellings into forms sqlglot renders for every engine."""
    if isinstance(node, exp.Contains):
        if isinstance(node.this, exp.Array):  # narwhals' is_in: contains([values], column)
            return exp.In(this=node.expression, expressions=list(node.this.expressions))
        return exp.GT(
            this=exp.StrPosition(this=node.this, substr=node.expression), expression=exp.Literal.number(0)
        )
    return node


def _like_to_glob(pattern: str) -> str:
    out = []
    for ch in pattern:
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def _sqlite(node: exp.Expression) -> exp.Expression:
    """SQLite's LIKE ignores case and it lacks starts_with/ends_with: use GLOB and substr."""
    if isinstance(node, exp.Like):
        return exp.Glob(this=node.this, expression=exp.Literal.string(_like_to_glob(node.expression.this)))
    if isinstance(node, exp.StartsWith | exp.EndsWith):
        n = len(node.expression.this)  # n = 0 still gives NULL for a NULL value, as starts_with does
        start = exp.Literal.number(1) if isinstance(node, exp.StartsWith) else exp.Literal.number(-n)
        part = exp.Substring(this=node.this, start=start, length=exp.Literal.number(n))
        return exp.EQ(this=part, expression=node.expression)
    return node


def _decimal_round(node: exp.Expression) -> exp.Expression:
    """PostgreSQL and ClickHouse round floats half to even; on decimals they round half away from
    zero like DuckDB, SQLite and polars, so the value is rounded as a decimal."""
    if isinstance(node, exp.Round):
        decimal = exp.DataType.build("DECIMAL(38, 10)")
        return exp.Round(this=exp.Cast(this=node.this, to=decimal), decimals=node.args.get("decimals"))
    return node


def _postgres(node: exp.Expression) -> exp.Expression:
    """PostgreSQL has starts_with but no ends_with: compare the right end instead."""
    if isinstance(node, exp.EndsWith):
        right = exp.Right(this=node.this, expression=exp.Literal.number(len(node.expression.this)))
        return exp.EQ(this=right, expression=node.expression)
    return node


def render(tree: exp.Expression, dialect: str) -> str:
    """A checked filter as SQL for ``dialect``."""
    tree = tree.transform(_portable)
    if dialect == "sqlite":
        tree = tree.transform(_sqlite)
    if dialect == "postgres":
        tree = tree.transform(_postgres)
    if dialect in ("postgres", "clickhouse"):
        tree = tree.transform(_decimal_round)
    return tree.sql(dialect=dialect)


def compile_filters(filters: Sequence[Any], *, dialect: str, schema: Mapping[str, pl.DataType]) -> list[str]:
    """Each filter as one SQL predicate for ``dialect`` over a relation with columns ``schema``.

    ``schema`` maps the filtered relation's column names to polars dtypes (used to translate
    narwhals expressions). The returned strings are combined with AND by the caller. Raises
    :class:`FilterError` for a filter that is not an allowed expression over those columns.

    >>> import polars as pl
    >>> compile_filters(["split = 'train' AND frames > 10"], dialect="postgres",
    ...                 schema={"split": pl.String(), "frames": pl.Int64()})
    ['"split" = \\'train\\' AND "frames" > 10']
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
    return [render(_as_tree(f, schema), dialect) for f in filters]


# -- polars (in-memory store) ---------------------------------------------------------------------
def _literal_value(node: exp.Literal) -> Any:
    if node.is_string:
        return node.this
    text = node.this
    try:
        return int(text)
    except ValueError:
        return float(text)


def _like_regex(pattern: str, ignore_case: bool) -> str:
    body = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return ("(?is)" if ignore_case else "(?s)") + "^" + body + "$"


class _PolarsTranslator:
    def __init__(self, schema: Mapping[str, pl.DataType]) -> None:
        self.schema = schema

    def dtype_of(self, node: exp.Expression) -> pl.DataType | None:
        node = node.unnest()
        if isinstance(node, exp.Column):
            return self.schema.get(node.name)
        if isinstance(node, exp.Cast):
            return _CAST_TYPES[node.to.this]
        if isinstance(node, exp.Div):
            return pl.Float64()
        if isinstance(node, exp.Add | exp.Sub | exp.Mul):
            sides = [self.dtype_of(node.this), self.dtype_of(node.expression)]
            if any(t is not None and t.is_float() for t in sides):
                return pl.Float64()
            return pl.Int64() if all(t is not None and t.is_integer() for t in sides) else None
        if isinstance(node, exp.Neg | exp.Abs | exp.Round):
            return self.dtype_of(node.this)
        if isinstance(node, exp.Literal) and not node.is_string:
            return pl.Int64() if isinstance(_literal_value(node), int) else pl.Float64()
        return None

    def coerce(self, node: exp.Expression, target: pl.DataType | None) -> pl.Expr:
        """A string literal compared with a typed value takes that type, as SQL engines do."""
        inner = node.unnest()
        if target is not None and isinstance(inner, exp.Literal) and inner.is_string and target != pl.String:
            value = pl.lit(inner.this, dtype=pl.String)
            if isinstance(target, pl.Datetime):
                return value.str.to_datetime(time_unit=target.time_unit, time_zone=target.time_zone)
            if isinstance(target, pl.Date):
                return value.str.to_date()
            return value.cast(target)
        return self(node)

    def pair(self, node: exp.Expression) -> tuple[pl.Expr, pl.Expr]:
        left, right = node.this, node.expression
        return self.coerce(left, self.dtype_of(right)), self.coerce(right, self.dtype_of(left))

    def __call__(self, node: exp.Expression) -> pl.Expr:
        handler: Callable[[Any], pl.Expr] | None = getattr(self, "_" + type(node).__name__.lower(), None)
        if handler is None:  # parse_filter only lets allowed nodes through
            raise FilterError(f"'{_snippet(node)}' cannot be evaluated in memory.")
        return handler(node)

    def _column(self, node: exp.Column) -> pl.Expr:
        return pl.col(node.name)

    def _literal(self, node: exp.Literal) -> pl.Expr:
        return pl.lit(_literal_value(node))

    def _boolean(self, node: exp.Boolean) -> pl.Expr:
        return pl.lit(bool(node.this))

    def _null(self, node: exp.Null) -> pl.Expr:
        return pl.lit(None)

    def _paren(self, node: exp.Paren) -> pl.Expr:
        return self(node.this)

    def _neg(self, node: exp.Neg) -> pl.Expr:
        return -self(node.this)

    def _not(self, node: exp.Not) -> pl.Expr:
        return ~self(node.this).cast(pl.Boolean)

    # Long AND / OR chains are flattened: both follow SQL's three-valued logic, as & and | do.
    # Operands are cast like DuckDB does in a boolean context (NULL and numbers become booleans).
    def _and(self, node: exp.And) -> pl.Expr:
        return pl.all_horizontal([self(e).cast(pl.Boolean) for e in node.flatten()])

    def _or(self, node: exp.Or) -> pl.Expr:
        return pl.any_horizontal([self(e).cast(pl.Boolean) for e in node.flatten()])

    def _eq(self, node: exp.EQ) -> pl.Expr:
        a, b = self.pair(node)
        return a == b

    def _neq(self, node: exp.NEQ) -> pl.Expr:
        a, b = self.pair(node)
        return a != b

    def _gt(self, node: exp.GT) -> pl.Expr:
        a, b = self.pair(node)
        return a > b

    def _gte(self, node: exp.GTE) -> pl.Expr:
        a, b = self.pair(node)
        return a >= b

    def _lt(self, node: exp.LT) -> pl.Expr:
        a, b = self.pair(node)
        return a < b

    def _lte(self, node: exp.LTE) -> pl.Expr:
        a, b = self.pair(node)
        return a <= b

    def _nullsafeeq(self, node: exp.NullSafeEQ) -> pl.Expr:
        a, b = self.pair(node)
        return a.eq_missing(b)

    def _nullsafeneq(self, node: exp.NullSafeNEQ) -> pl.Expr:
        a, b = self.pair(node)
        return a.ne_missing(b)

    def _add(self, node: exp.Add) -> pl.Expr:
        return self(node.this) + self(node.expression)

    def _sub(self, node: exp.Sub) -> pl.Expr:
        return self(node.this) - self(node.expression)

    def _mul(self, node: exp.Mul) -> pl.Expr:
        return self(node.this) * self(node.expression)

    def _div(self, node: exp.Div) -> pl.Expr:
        return self(node.this).cast(pl.Float64) / self(node.expression)

    def _dpipe(self, node: exp.DPipe) -> pl.Expr:
        return pl.concat_str([self(node.this).cast(pl.String), self(node.expression).cast(pl.String)])

    def _is(self, node: exp.Is) -> pl.Expr:
        value, target = self(node.this), node.expression
        if isinstance(target, exp.Null):
            return value.is_null()
        return value.eq_missing(self(target))

    def _in(self, node: exp.In) -> pl.Expr:
        dtype = self.dtype_of(node.this)
        left = self(node.this)
        items = [e for e in node.expressions if not isinstance(e.unnest(), exp.Null)]
        if not items:
            return pl.lit(None, dtype=pl.Boolean)
        condition = None
        for item in items:
            part = left == self.coerce(item, dtype)
            condition = part if condition is None else condition | part
        assert condition is not None
        return condition

    def _between(self, node: exp.Between) -> pl.Expr:
        dtype = self.dtype_of(node.this)
        value = self(node.this)
        return (value >= self.coerce(node.args["low"], dtype)) & (
            value <= self.coerce(node.args["high"], dtype)
        )

    def _like(self, node: exp.Like) -> pl.Expr:
        return self(node.this).str.contains(_like_regex(node.expression.this, ignore_case=False))

    def _ilike(self, node: exp.ILike) -> pl.Expr:
        return self(node.this).str.contains(_like_regex(node.expression.this, ignore_case=True))

    def _case(self, node: exp.Case) -> pl.Expr:
        operand = node.this
        chain: Any = None
        for branch in node.args.get("ifs") or []:
            condition = self(branch.this) if operand is None else self(operand) == self(branch.this)
            chain = (pl.when(condition) if chain is None else chain.when(condition)).then(
                self(branch.args["true"])
            )
        default = node.args.get("default")
        return chain.otherwise(self(default) if default is not None else pl.lit(None))

    def _if(self, node: exp.If) -> pl.Expr:
        other = node.args.get("false")
        return (
            pl.when(self(node.this))
            .then(self(node.args["true"]))
            .otherwise(self(other) if other is not None else pl.lit(None))
        )

    def _cast(self, node: exp.Cast) -> pl.Expr:
        target = _CAST_TYPES[node.to.this]
        inner = node.this.unnest()
        if isinstance(inner, exp.Literal) and inner.is_string:
            return self.coerce(inner, target)
        source = self.dtype_of(inner)
        if target.is_integer() and source is not None and source.is_float():
            # DuckDB rounds a fractional number to the nearest integer, ties to even
            return self(node.this).round(0, mode="half_to_even").cast(target)
        return self(node.this).cast(target)

    def _lower(self, node: exp.Lower) -> pl.Expr:
        return self(node.this).str.to_lowercase()

    def _upper(self, node: exp.Upper) -> pl.Expr:
        return self(node.this).str.to_uppercase()

    def _length(self, node: exp.Length) -> pl.Expr:
        return self(node.this).str.len_chars().cast(pl.Int64)  # SQL lengths are signed

    def _trim(self, node: exp.Trim) -> pl.Expr:
        return self(node.this).str.strip_chars(" ")

    def _substring(self, node: exp.Substring) -> pl.Expr:
        start = node.args.get("start")
        length = node.args.get("length")
        offset = self(start) - 1 if start is not None else pl.lit(0)
        return self(node.this).str.slice(offset, self(length) if length is not None else None)

    def _startswith(self, node: exp.StartsWith) -> pl.Expr:
        return self(node.this).str.starts_with(node.expression.this)

    def _endswith(self, node: exp.EndsWith) -> pl.Expr:
        return self(node.this).str.ends_with(node.expression.this)

    def _contains(self, node: exp.Contains) -> pl.Expr:
        if isinstance(node.this, exp.Array):
            return self._in(exp.In(this=node.expression, expressions=list(node.this.expressions)))
        return self(node.this).str.contains(node.expression.this, literal=True)

    def _regexplike(self, node: exp.RegexpLike) -> pl.Expr:
        return self(node.this).str.contains(node.expression.this)

    def _coalesce(self, node: exp.Coalesce) -> pl.Expr:
        return pl.coalesce([self(node.this), *(self(e) for e in node.expressions)])

    def _nullif(self, node: exp.Nullif) -> pl.Expr:
        value, other = self.pair(node)
        return pl.when(value == other).then(None).otherwise(value)

    def _abs(self, node: exp.Abs) -> pl.Expr:
        return self(node.this).abs()

    def _round(self, node: exp.Round) -> pl.Expr:
        decimals = node.args.get("decimals")
        places = 0 if decimals is None else _literal_value(decimals.unnest())
        if not isinstance(places, int):
            raise FilterError(
                f"round(): the number of decimals must be an integer, got '{_snippet(decimals)}'."
            )
        return self(node.this).round(places, mode="half_away_from_zero")


def polars_error_reason(exc: BaseException) -> str:
    """An engine error's first paragraph, without polars' query plan dump."""
    text = str(exc)
    for marker in ("\n\nResolved plan", "\n\nThis error occurred", "\n\n"):
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def polars_filters(filters: Sequence[Any], schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    """Filters as polars expressions, for the in-memory store.

    Each filter (string or narwhals expression) is checked exactly as :func:`compile_filters` does
    and the checked expression is translated, so SQL semantics (NULLs, true division, LIKE) hold in
    memory too. The result is type-checked on an empty frame, so a type mismatch fails here with a
    short message instead of polars' query plan.
    """
    out: list[Any] = []
    empty = pl.LazyFrame(schema=dict(schema))
    for f in filters:
        if isinstance(f, pl.Expr):
            raise FilterError(
                f"A polars expression {f!r} cannot be used as a filter: use nw.col(...) (narwhals) or a SQL string."
            )
        tree = _as_tree(f, schema)
        try:
            expr = _PolarsTranslator(schema)(tree)
            dtype = empty.select(expr.alias("__metaxy_filter")).collect().schema["__metaxy_filter"]
        except FilterError:
            raise
        except Exception as exc:
            raise FilterError(
                f"Filter {f!r} does not fit the column types: {polars_error_reason(exc)}"
            ) from None
        if dtype not in (pl.Boolean, pl.Null):
            raise FilterError(f"Filter {f!r} is a value of type {dtype}, not a condition (true or false).")
        out.append(expr.cast(pl.Boolean))  # a NULL condition keeps no row, as in SQL
    return out
