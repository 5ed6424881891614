"""Write a page's plain rows in one statement per table, whatever the number of rows.

PostgreSQL: the rows travel as ONE JSON text, expanded by ``json_to_recordset`` into
``INSERT ... SELECT`` and ``UPDATE ... FROM``. The statement's text never changes with the page
size, so the driver converts and prepares it once and the server parses it once, where a multi-row
``VALUES`` list of ~1,000 placeholders was rebuilt and re-parsed for every page; and ``json.dumps``
(C) encodes a page's rows far faster than the driver adapts ~1,000 parameters or per-column arrays.

Other backends (SQLite): a multi-row ``INSERT ... RETURNING`` and an ``UPDATE`` executemany
through SQLAlchemy Core, which SQLite handles in-process at no parsing cost worth saving.

Values go through each column type's own bind processing (enums, UTC timestamps, JSON), so both
paths store exactly what the ORM would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Date,
    DateTime,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    insert,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

Row = dict[str, Any]


def insert_rows(session: Session, table: Table, rows: Sequence[Row], now: datetime) -> list[int]:
    """Insert ``rows`` (column -> value) with created_at/updated_at = ``now``; their new ids, in order."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        stamped = [{**row, "created_at": now, "updated_at": now} for row in rows]
        return list(session.execute(statement, stamped).scalars())
    columns = tuple(rows[0].keys())
    params = {"rows": _rows_json(dialect, table, columns, rows), "now": _stamp(dialect, table, now)}
    result = session.connection().exec_driver_sql(_insert_sql(dialect, table, columns), params)
    # The ids come from the table's sequence, drawn row by row in the ORDER BY order, so sorted
    # ids line up with the rows (the same guarantee SQLAlchemy's own ordered bulk INSERT relies on).
    return sorted(row_id for (row_id,) in result)


def update_rows(session: Session, table: Table, fields: Sequence[str], rows: Sequence[Row], now: datetime) -> None:
    """Write ``fields`` of every row (each has its ``id``) and updated_at = ``now``, in one statement."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({name: bindparam(f"new_{name}") for name in (*fields, "updated_at")})
        )
        session.execute(
            statement,
            [{"row_id": row["id"], "new_updated_at": now, **{f"new_{n}": row[n] for n in fields}} for row in rows],
        )
        return
    params = {"rows": _rows_json(dialect, table, ("id", *fields), rows), "now": _stamp(dialect, table, now)}
    session.connection().exec_driver_sql(_update_sql(dialect, table, tuple(fields)), params)


def among(dialect_name: str, column: ColumnElement, name: str) -> ColumnElement[bool]:
    """``column IN <the keys given as parameter name>``, for a statement built once and run per page.

    On PostgreSQL ``= ANY(one array)``: the statement text is the same for any number of keys
    (converted and prepared once); elsewhere an expanding ``IN``.
    """
    if dialect_name != "postgresql":
        return column.in_(bindparam(name, expanding=True))
    return column == any_(bindparam(name, type_=ARRAY(column.type)))


def _stamp(dialect: Dialect, table: Table, now: datetime) -> Any:
    """``now`` for created_at / updated_at, one parameter for every row (through the column's type)."""
    process = table.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
    return now if process is None else process(now)


def _rows_json(dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> str:
    """The rows as one JSON array, each value as its column type stores it (see :func:`_to_json`)."""
    converters = [(name, _to_json(dialect, table, name)) for name in columns]
    encoded = [
        {name: row[name] if convert is None else convert(row[name]) for name, convert in converters}
        for row in rows
    ]
    return _dumps(encoded)


def _dumps(value: Any) -> str:
    # NaN and Infinity are not JSON: refused here with a clear error rather than by the server.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@lru_cache(maxsize=256)
def _to_json(dialect: Dialect, table: Table, name: str) -> Callable[[Any], Any] | None:
    """How a column's value travels in the JSON text: what the column type's own bind processing
    makes of it (enum values, the UTC check), dates and datetimes then as ISO text, which
    PostgreSQL reads back into DATE / TIMESTAMPTZ exactly. A JSON column's value travels as its own
    JSON text (cast back in SQL), so ``None`` is stored as JSON ``null``, as the ORM stores it."""
    column_type = table.c[name].type
    if isinstance(column_type, JSON):
        return _dumps
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    stored_as = column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type
    if isinstance(stored_as, Date | DateTime):
        if process is None:
            return _iso
        return lambda value: None if value is None else _iso(process(value))
    return process


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _record_columns(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """``json_to_recordset``'s column definition list: each column with its own SQL type (JSON as text)."""
    quote = dialect.identifier_preparer.quote
    return ", ".join(
        f"{quote(name)} {'TEXT' if _is_json(table, name) else table.c[name].type.compile(dialect=dialect)}"
        for name in columns
    )


def _value(dialect: Dialect, table: Table, name: str) -> str:
    """The record's value for a column, as the column's type (a JSON column's text cast back)."""
    quoted = f"v.{dialect.identifier_preparer.quote(name)}"
    return f"{quoted}::{table.c[name].type.compile(dialect=dialect)}" if _is_json(table, name) else quoted


def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)


@lru_cache(maxsize=256)
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    names = ", ".join(dialect.identifier_preparer.quote(name) for name in columns)
    values = ", ".join(_value(dialect, table, name) for name in columns)
    return (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}, created_at, updated_at) "
        f"SELECT {values}, %(now)s, %(now)s "
        f"FROM ROWS FROM (json_to_recordset(%(rows)s::json) AS ({_record_columns(dialect, table, columns)})) "
        f"WITH ORDINALITY AS v({names}, row_number) ORDER BY row_number RETURNING id"
    )


@lru_cache(maxsize=256)
def _update_sql(dialect: Dialect, table: Table, fields: tuple[str, ...]) -> str:
    quote = dialect.identifier_preparer.quote
    assignments = ", ".join(f"{quote(name)} = {_value(dialect, table, name)}" for name in fields)
    return (
        f"UPDATE {dialect.identifier_preparer.format_table(table)} AS t SET {assignments}, updated_at = %(now)s "
        f"FROM json_to_recordset(%(rows)s::json) AS v({_record_columns(dialect, table, ('id', *fields))}) "
        f"WHERE t.id = v.id"
    )
