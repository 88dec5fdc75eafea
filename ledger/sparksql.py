"""DuckDB SQL to Spark SQL: the views and the named audit queries, translated, not copied.

``ledger/views.py`` and ``ledger/queries/*.sql`` stay the one source of every query. This
module parses their DuckDB SQL with sqlglot, applies a short list of fix-ups where
sqlglot's DuckDB → Spark output is wrong or is not Spark SQL, and writes Spark SQL. It
does no I/O and never imports pyspark (ledger/sparkquery.py runs the result).

The fix-ups (each one a function below, each tested in tests/test_spark.py):

1. ``rollback`` as a column name is quoted before parsing (sqlglot reads it as the
   ROLLBACK statement keyword); ``len(list)`` is read as ``array_length`` (sqlglot maps
   ``len`` to Spark's string ``LENGTH``; our SQL only takes the length of lists).
2. ``AS MATERIALIZED`` CTEs lose the hint (Spark has no such syntax).
3. ``ASOF [LEFT] JOIN t ON a.x > t.y``: Spark has no as-of join. The right side gets the
   next ``y`` by ``lead()`` and the join becomes a range join on ``y < a.x <= next y``,
   which picks the same row (the largest ``y`` below ``a.x``) when ``y`` is unique.
4. ``SEMI JOIN`` / ``ANTI JOIN`` become ``LEFT SEMI`` / ``LEFT ANTI JOIN`` (Spark's words).
5. ``FROM r, json_each(x) AS t`` becomes ``LATERAL VIEW explode(from_json(x,
   'MAP<STRING,STRING>')) t AS key, value``, and ``t.value ->> '$'`` is ``t.value`` (the
   map already holds the unquoted text of each member).
6. ``TRY_CAST(json AS T[])`` / struct / ``JSON[]``: Spark cannot cast text to a list, so
   ``from_json(json, 'ARRAY<T>')`` (sqlglot does this only when it can see the operand
   is JSON); ``JSON`` elements are read as ``STRING`` (their JSON text).
7. ``regexp_extract(s, re, ['a', 'b'])`` (a struct of named groups) becomes
   ``named_struct('a', regexp_extract(s, re, 1), 'b', regexp_extract(s, re, 2))``.
8. JSON paths built as ``'$."' || key || '"'`` become ``'$[''' || key || ''']'``
   (Spark's ``get_json_object`` has no quoted-member syntax).
9. ``list(x ORDER BY x)`` / ``list(DISTINCT x ORDER BY x)``: sqlglot drops the ORDER BY;
   it becomes ``array_sort(collect_list(x))`` (only ordering by the listed value itself
   is supported; anything else is refused rather than translated wrongly).
10. ``list_has_all(a, b)`` → ``size(array_except(b, a)) = 0``; ``list_position`` →
    ``nullif(array_position(…), 0)`` (DuckDB gives NULL, not 0, when absent); ``l[i]``
    (1-based) → ``try_element_at(l, i)`` (Spark's ``[]`` is 0-based and sqlglot only
    shifts literal indexes).
11. ``epoch(ts)`` → ``unix_micros(ts) / 1e6`` (sqlglot's ``unix_timestamp`` drops the
    fraction of a second); ``to_days(n)`` → ``make_dt_interval(n)``.
12. ``regexp_full_match(s, re)`` → ``s RLIKE '^(?:' || re || ')$'`` with ``\\z`` for
    the end (Java's ``$`` also matches before a final newline).
13. ``json_array_length(j, path)`` → ``json_array_length(get_json_object(j, path))``.
16. ``WITH RECURSIVE x AS (… UNION …)``: Spark's recursive CTEs take UNION ALL only. The
    recursion becomes ``x__paths`` with UNION ALL, and ``x`` is its SELECT DISTINCT. Same
    rows, as long as the recursion ends without UNION's duplicate check (it does on the
    lineage: parents are registered before their children, so it has no cycles).
17. A WHERE that names an alias of its own SELECT list (DuckDB allows it; Spark does not)
    gets the aliased expression inline: only an unqualified name, only an alias of a
    scalar subquery, and only a name the SELECT list does not read as a column (a table's
    column of the same name wins in DuckDB; the translator cannot see the tables).
15. ``OVER (w ROWS BETWEEN …)`` (a named window plus a frame): Spark refuses a frame on
    a window name, so the named window's PARTITION BY and ORDER BY are written inline.
14. ``to_json(text)`` (a JSON string literal of a text) → the ``"v"`` member's value of
    ``to_json(named_struct('v', text))`` (Spark's ``to_json`` takes no scalar).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

import sqlglot
from sqlglot import exp

from .errors import EngineError


class UntranslatableError(EngineError):
    """DuckDB SQL that sqlglot and the fix-ups cannot turn into Spark SQL."""


def _spark(sql: str) -> exp.Expression:
    # (sqlglot 30 types parse_one as its base ``Expr``; every parsed tree is an Expression)
    return cast(exp.Expression, sqlglot.parse_one(sql, read="spark"))


_ROLLBACK = re.compile(r"(?<!['\"\w])rollback(?!['\"\w])")
_LEN = re.compile(r"(?<![\w.])len\(")


def _pre_parse(sql: str) -> str:
    """Fix-up 1 (on the text: sqlglot cannot parse the first, and maps the second wrong)."""
    return _LEN.sub("array_length(", _ROLLBACK.sub('"rollback"', sql))


def _asof(join: exp.Join) -> exp.Join:
    """Fix-up 3: ASOF JOIN t ON a.x > t.y → a range join on t.y < a.x <= t.next."""
    on = join.args.get("on")
    if not isinstance(on, exp.GT | exp.GTE):
        raise UntranslatableError(f"ASOF JOIN condition {on.sql('duckdb') if on else ''!r}")
    left, right = on.this, on.expression
    table = join.this
    alias = table.alias_or_name
    if not isinstance(right, exp.Column) or right.table != alias:
        raise UntranslatableError("ASOF JOIN: the right side must be a column of the joined table")
    inner = table.copy()
    col = right.name
    sub = _spark(f"SELECT *, lead({col}) OVER (ORDER BY {col}) AS __asof_next FROM x").assert_is(
        exp.Select
    )
    sub.set("from_", exp.From(this=inner))
    nxt = exp.column("__asof_next", table=alias)
    upper = exp.LTE if isinstance(on, exp.GT) else exp.LT
    cond = exp.and_(
        on.copy(),
        exp.paren(
            exp.or_(
                exp.Is(this=nxt, expression=exp.Null()),
                upper(this=left.copy(), expression=nxt.copy()),
            )
        ),
    )
    new = exp.Join(
        this=exp.Subquery(this=sub, alias=exp.TableAlias(this=exp.to_identifier(alias))), on=cond
    )
    if join.args.get("side"):
        new.set("side", join.args["side"])
    return new


def _spark_type(t: exp.DataType) -> str:
    """A DuckDB type as Spark's from_json schema text (JSON elements as their text)."""
    t = t.copy()
    for node in t.find_all(exp.DataType):
        if node.this == exp.DataType.Type.JSON:
            node.set("this", exp.DataType.Type.VARCHAR)
    return t.sql("spark")


def _json_path_concat(node: exp.DPipe) -> None:
    """Fix-up 8 on one ``'$."' || key || '"…'`` chain (rewritten in place)."""
    parts: list[exp.Expression] = []
    stack: list[exp.Expression] = [node]
    while stack:  # the chain's operands, left to right
        n = stack.pop()
        if isinstance(n, exp.DPipe):
            stack.extend([n.expression, n.this])
        else:
            parts.append(n)
    first = parts[0]
    if not (isinstance(first, exp.Literal) and first.is_string and first.this == '$."'):
        return
    first.set("this", "$['")
    for p in parts[1:]:
        if isinstance(p, exp.Literal) and p.is_string and p.this.startswith('"'):
            p.set("this", "']" + p.this[1:])


def _fix(node: exp.Expression, json_each: set[str]) -> exp.Expression:
    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)  # fix-up 2
    if isinstance(node, exp.Join):
        if node.args.get("method") and str(node.args["method"]).upper() == "ASOF":
            return _asof(node)
        kind = str(node.args.get("kind") or "").upper()
        if kind in ("SEMI", "ANTI") and not node.args.get("side"):
            node.set("side", "LEFT")  # fix-up 4
    if isinstance(node, exp.TryCast | exp.Cast) and node.to.this in (
        exp.DataType.Type.ARRAY,
        exp.DataType.Type.STRUCT,
        exp.DataType.Type.MAP,
    ):
        inner = node.this
        if not isinstance(inner, exp.Array):  # fix-up 6 (a list literal casts in Spark too)
            return exp.Anonymous(
                this="FROM_JSON", expressions=[inner, exp.Literal.string(_spark_type(node.to))]
            )
    if isinstance(node, exp.RegexpExtract) and isinstance(node.args.get("group"), exp.Array):
        names = node.args["group"].expressions  # fix-up 7
        args: list[exp.Expression] = []
        for i, name in enumerate(names, 1):
            args += [
                name.copy(),
                exp.RegexpExtract(
                    this=node.this.copy(),
                    expression=node.expression.copy(),
                    group=exp.Literal.number(i),
                ),
            ]
        return exp.Anonymous(this="NAMED_STRUCT", expressions=args)
    if isinstance(node, exp.DPipe) and not isinstance(node.parent, exp.DPipe):
        _json_path_concat(node)  # fix-up 8
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Order):
        order = node.this  # fix-up 9
        value = order.this
        target = value.expressions[0] if isinstance(value, exp.Distinct) else value
        keys = order.expressions
        if len(keys) != 1 or keys[0].this != target or keys[0].args.get("desc"):
            raise UntranslatableError(f"{node.sql('duckdb')}: only list(x ORDER BY x) translates")
        return exp.Anonymous(this="ARRAY_SORT", expressions=[exp.ArrayAgg(this=value.copy())])
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        a = node.expressions
        if name == "list_has_all" and len(a) == 2:  # fix-up 10
            return _spark("size(array_except(b, a)) = 0").transform(
                lambda n: (
                    {"a": a[0], "b": a[1]}.get(n.name, n).copy() if isinstance(n, exp.Column) else n
                )
            )
        if name == "list_position" and len(a) == 2:
            return exp.Nullif(
                this=exp.Anonymous(this="ARRAY_POSITION", expressions=a),
                expression=exp.Literal.number(0),
            )
        if name == "json_array_length" and len(a) == 2:  # fix-up 13
            return exp.Anonymous(
                this="JSON_ARRAY_LENGTH",
                expressions=[exp.Anonymous(this="GET_JSON_OBJECT", expressions=a)],
            )
        if name == "to_json" and len(a) == 1:  # fix-up 14
            j = exp.Anonymous(
                this="TO_JSON",
                expressions=[
                    exp.Anonymous(this="NAMED_STRUCT", expressions=[exp.Literal.string("v"), a[0]])
                ],
            )
            return _spark("substring(j, 6, length(j) - 6)").transform(
                lambda n: j.copy() if isinstance(n, exp.Column) else n
            )
        if name == "json_each":
            raise UntranslatableError("json_each outside FROM")
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        idx = node.expressions[0]  # (a literal index: sqlglot shifts it itself)
        if not isinstance(idx, exp.Literal):
            # (Spark wants an INT index; our arithmetic on positions is BIGINT)
            return exp.Anonymous(
                this="TRY_ELEMENT_AT",
                expressions=[node.this, exp.cast(idx, exp.DataType.Type.INT)],
            )
    if isinstance(node, exp.TimeToUnix):  # fix-up 11
        return exp.Div(
            this=exp.Anonymous(this="UNIX_MICROS", expressions=[node.this]),
            expression=exp.Literal.number("1000000.0"),
        )
    if isinstance(node, exp.ToDays):
        return exp.Anonymous(this="MAKE_DT_INTERVAL", expressions=[node.this])
    if isinstance(node, exp.RegexpFullMatch):  # fix-up 12
        pattern = exp.Anonymous(
            this="CONCAT",
            expressions=[
                exp.Literal.string("^(?:"),
                node.expression,
                exp.Literal.string(")\\z"),
            ],
        )
        return exp.RegexpLike(this=node.this, expression=pattern)
    if (
        isinstance(node, exp.JSONExtractScalar)
        and isinstance(node.this, exp.Column)
        and node.this.table in json_each
        and node.this.name == "value"
    ):
        return node.this  # fix-up 5 (the value is already text)
    return node


def _json_each(tree: exp.Expression) -> set[str]:
    """Fix-up 5: move each ``json_each(x) AS t`` join into a LATERAL VIEW; its aliases."""
    aliases: set[str] = set()
    for select in list(tree.find_all(exp.Select)):
        joins = select.args.get("joins") or []
        keep = []
        for j in joins:
            t = j.this
            if (
                isinstance(t, exp.Table)
                and isinstance(t.this, exp.Anonymous)
                and t.this.name.lower() == "json_each"
            ):
                alias = t.alias_or_name
                arg = t.this.expressions[0]
                lat = _spark(
                    "SELECT * FROM x LATERAL VIEW EXPLODE(FROM_JSON(j, 'MAP<STRING, STRING>')) "
                    f"{alias} AS key, value"
                ).args["laterals"][0]
                lat.find(exp.Column).replace(arg.copy())  # (j: the one column in it)
                laterals = select.args.get("laterals") or []
                select.set("laterals", [*laterals, lat])
                aliases.add(alias)
            else:
                keep.append(j)
        select.set("joins", keep)
    return aliases


def _inline_windows(tree: exp.Expression) -> None:
    """Fix-up 15: ``OVER (w ROWS …)`` → ``OVER (PARTITION BY … ORDER BY … ROWS …)``."""
    for select in list(tree.find_all(exp.Select)):
        named = {w.name: w for w in select.args.get("windows") or []}
        for w in select.find_all(exp.Window):
            ref = w.args.get("alias")
            if w.args.get("spec") is None or ref is None or ref.name not in named:
                continue
            d = named[ref.name]
            w.set("alias", None)
            if d.args.get("partition_by"):
                w.set("partition_by", [p.copy() for p in d.args["partition_by"]])
            if d.args.get("order"):
                w.set("order", d.args["order"].copy())


def _recursive_union(tree: exp.Expression) -> None:
    """Fix-up 16: a recursive CTE's UNION → UNION ALL, deduplicated in a CTE after it."""
    for with_ in list(tree.find_all(exp.With)):
        if not with_.args.get("recursive"):
            continue
        out: list[exp.CTE] = []
        for cte in with_.expressions:
            name = cte.alias_or_name
            body = cte.this
            refs = [t for t in body.find_all(exp.Table) if t.name == name]
            if not (isinstance(body, exp.Union) and body.args.get("distinct") and refs):
                out.append(cte)
                continue
            paths = f"{name}__paths"
            body.set("distinct", False)
            for t in refs:
                t.set("this", exp.to_identifier(paths))
            cte.args["alias"].set("this", exp.to_identifier(paths))
            out.append(cte)
            out.append(
                exp.CTE(
                    this=_spark(f"SELECT DISTINCT * FROM {paths}"),
                    alias=exp.TableAlias(this=exp.to_identifier(name)),
                )
            )
        with_.set("expressions", out)


def _post_order(
    node: exp.Expression, f: Callable[[exp.Expression], exp.Expression]
) -> exp.Expression:
    """``f`` applied to every node, children first (so a fix-up sees fixed operands)."""
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expression):
            node.set(key, _post_order(value, f))
        elif isinstance(value, list):
            node.set(
                key, [_post_order(v, f) if isinstance(v, exp.Expression) else v for v in value]
            )
    return f(node)


def _where_aliases(tree: exp.Expression) -> None:
    """Fix-up 17: an alias of the SELECT list used in its WHERE is written out there."""
    for select in list(tree.find_all(exp.Select)):
        where = select.args.get("where")
        if where is None:
            continue
        named = {
            e.alias: e.this
            for e in select.expressions
            if isinstance(e, exp.Alias) and isinstance(e.this, exp.Subquery)
        }
        # (a name the SELECT list also reads as a column is a column: DuckDB prefers it)
        read = {c.name for e in select.expressions for c in e.find_all(exp.Column)}
        for col in list(where.find_all(exp.Column)):
            if col.table or col.name not in named or col.name in read:
                continue
            if col.find_ancestor(exp.Select) is select:
                col.replace(exp.paren(named[col.name].copy()))


def translate(sql: str) -> str:
    """One DuckDB statement (a SELECT or a CREATE VIEW) as Spark SQL; ``$name`` parameters
    become Spark's ``:name`` markers. Raises UntranslatableError if it cannot."""
    try:
        tree = cast(exp.Expression, sqlglot.parse_one(_pre_parse(sql), read="duckdb"))
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UntranslatableError(f"sqlglot cannot parse it: {first}") from None
    aliases = _json_each(tree)
    _inline_windows(tree)
    _recursive_union(tree)
    _where_aliases(tree)
    tree = _post_order(tree, lambda n: _fix(n, aliases))
    try:
        return tree.sql("spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as exc:
        raise UntranslatableError(f"sqlglot cannot write it as Spark SQL: {exc}") from None


def statements(sql: str) -> list[str]:
    """The statements of the views' script (``;`` at a line's end ends one)."""
    return [s.strip() for s in re.split(r";\s*$", sql, flags=re.M) if s.strip()]
