"""Many rows of one model inserted with one statement: the listener's hot path.

``bulk_create`` builds its SQL value by value through the query compiler, and a filter compiles its
query each time: for the listener, which commits every message before its 250, that was most of the
database thread's time (docs/performance.md). ``Rows`` asks Django once per model and database
vendor for the table, the columns and how each field turns a value into a database value
(``Field.get_db_prep_save``, so JSON, binary and date columns are adapted exactly as the ORM adapts
them on SQLite and PostgreSQL), keeps the statements, then inserts a batch with one multi-row
``INSERT`` per chunk the backend allows, giving back the ids when asked. Errors are Django's
``DatabaseError`` like any other query's. On SQLite the statements are written with the driver's own
``?`` and handed to it directly: Django's cursor rewrites every ``%s`` of every statement it runs, and
for a multi-row INSERT that was a twentieth of the listener's CPU time.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

Prepare = Callable[[object], object]

_PLAIN = (models.CharField, models.TextField, models.IntegerField, models.BooleanField, models.ForeignKey)
"""Fields whose Python value the database driver takes as it is (the listener passes str, int and bool)."""


KEPT_STATEMENT_ROWS = 64
"""Statements for up to this many rows are built once and kept; larger ones are built when needed."""


class Rows:
    """INSERT of rows of ``model`` given as ``{field name: value}``; a field left out takes its default."""

    def __init__(self, model: type[models.Model], looked_up: Mapping[str, tuple[type[models.Model], str]] | None = None) -> None:
        self.model = model
        self.looked_up = dict(looked_up or {})
        """{foreign key attname: (model, unique field)}: the row gives that field's value, and the statement looks the
        id up itself (NULL when no row has it), which spares a query and its round trip."""
        self.statements: dict[tuple, str] = {}

    @cached_property
    def fields(self) -> list[models.Field]:
        return [field for field in self.model._meta.concrete_fields if not field.primary_key]

    @cached_property
    def names(self) -> list[str]:
        """Field names as rows give them: ``server_id`` for a foreign key, as in ``Model(server_id=…)``."""
        return [field.attname for field in self.fields]

    @cached_property
    def adapted(self) -> list[tuple[int, models.Field]]:
        """(position, field) of the columns whose values Django adapts for the database (dates, JSON, bytes…)."""
        return [(index, field) for index, field in enumerate(self.fields) if not isinstance(field, _PLAIN)]

    def values(self, rows: Iterable[Mapping[str, object]], connection: BaseDatabaseWrapper) -> list[list]:
        """Each row's values in column order; the defaults are made and adapted once per batch (one time for
        all its dates)."""
        # As the ORM does: a field's default, "" for a text field without one, else None.
        defaults = [field.get_default() for field in self.fields]
        for index, field in self.adapted:
            if defaults[index] is not None:
                defaults[index] = field.get_db_prep_save(defaults[index], connection)
        names, adapted = self.names, self.adapted
        prepared = []
        for row in rows:
            values = [row.get(name, default) for name, default in zip(names, defaults, strict=True)]
            for index, field in adapted:
                name = names[index]
                if name in row and values[index] is not None:
                    values[index] = field.get_db_prep_save(values[index], connection)
            prepared.append(values)
        return prepared

    def sql(self, connection: BaseDatabaseWrapper, rows: int = 1, returning: bool = False) -> str:
        """The INSERT of ``rows`` rows for the database of ``connection`` (kept for the small batches that recur)."""
        key = (connection.vendor, rows, returning)
        sql = self.statements.get(key)
        if sql is None:
            quote = connection.ops.quote_name
            parameter = "?" if connection.vendor == "sqlite" else "%s"
            placeholders = "(" + ", ".join(self.placeholder(field, quote, parameter) for field in self.fields) + ")"
            sql = (f"INSERT INTO {quote(self.model._meta.db_table)} ({', '.join(quote(field.column) for field in self.fields)}) "
                   f"VALUES {', '.join([placeholders] * rows)}")
            if returning:
                sql += f" RETURNING {quote(self.model._meta.pk.column)}"
            if rows <= KEPT_STATEMENT_ROWS:
                self.statements[key] = sql
        return sql

    def placeholder(self, field: models.Field, quote: Callable[[str], str], parameter: str) -> str:
        if field.attname not in self.looked_up:
            return parameter
        model, unique = self.looked_up[field.attname]
        meta = model._meta
        return (f"(SELECT {quote(meta.pk.column)} FROM {quote(meta.db_table)} "
                f"WHERE {quote(meta.get_field(unique).column)} = {parameter})")

    def prepare(self, rows: Iterable[Mapping[str, object]]) -> list[list]:
        """``values`` for the database in use: what ``insert_prepared`` takes. The listener prepares a batch
        before its turn to write, so that the turn only runs the statements."""
        return self.values(rows, connections[DEFAULT_DB_ALIAS])

    def insert(self, rows: list[Mapping[str, object]]) -> None:
        """Insert ``rows`` in the current transaction."""
        self.insert_prepared(self.prepare(rows))

    def chunks(self, connection: BaseDatabaseWrapper, values: list[list]) -> Iterator[list[list]]:
        """``values`` in pieces as large as one statement of the backend may be (its limit on parameters)."""
        size = max(1, connection.ops.bulk_batch_size(self.fields, values))
        for start in range(0, len(values), size):
            yield values[start:start + size]

    def insert_prepared(self, values: list[list]) -> None:
        """Insert prepared rows with one multi-row INSERT per chunk.

        Not ``executemany``: it steps once per row, and the sqlite3 module lets go of the GIL and takes it back
        at every step. Each time back, the database thread waits for the event loop, which is busy under load,
        and a commit of a few messages took ten times its own time.
        """
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.cursor() as cursor:
            for chunk in self.chunks(connection, values):
                execute(connection, cursor, self.sql(connection, len(chunk)), [value for row in chunk for value in row])

    def insert_returning_ids(self, rows: list[Mapping[str, object]]) -> list[int]:
        """Insert ``rows`` and return their ids in the order of ``rows``."""
        return self.insert_prepared_returning_ids(self.prepare(rows))

    def insert_prepared_returning_ids(self, values: list[list]) -> list[int]:
        """Insert prepared rows and return their ids in the order of ``values``.

        One multi-row INSERT per chunk. Rows are numbered in the order the VALUES list gives them. On
        SQLite, whose tables here are AUTOINCREMENT and where this transaction is the only writer, the ids
        of a statement follow one another up to ``lastrowid``: reading them back with ``RETURNING`` would
        take a step, and the GIL, per row (see ``insert_prepared``). On PostgreSQL, where other sessions
        draw from the same sequence, ``RETURNING`` gives them, sorted, since it promises no order.
        """
        connection = connections[DEFAULT_DB_ALIAS]
        sqlite = connection.vendor == "sqlite"
        ids = []
        with connection.cursor() as cursor:
            for chunk in self.chunks(connection, values):
                execute(connection, cursor, self.sql(connection, len(chunk), returning=not sqlite),
                        [value for row in chunk for value in row])
                if sqlite:
                    ids.extend(range(cursor.lastrowid - len(chunk) + 1, cursor.lastrowid + 1))
                else:
                    ids.extend(sorted(row[0] for row in cursor.fetchall()))
        return ids


def execute(connection: BaseDatabaseWrapper, cursor: object, sql: str, parameters: list) -> None:
    """Run ``sql`` (written with the database's own placeholders, ``Rows.sql``) through Django's ``cursor``; on
    SQLite straight to the driver, past the wrapper that would rewrite it, its errors still made Django's."""
    if connection.vendor == "sqlite":
        with connection.wrap_database_errors:
            sqlite3.Cursor.execute(cursor.cursor, sql, parameters)
    else:
        cursor.execute(sql, parameters)
