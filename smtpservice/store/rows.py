"""Many rows of one model inserted with one prepared statement: the listener's hot path.

``bulk_create`` builds its SQL value by value through the query compiler: for the listener, which
commits every message before its 250, that compiler was half of the database thread's time
(docs/performance.md). ``Rows`` asks Django once per model for the table, the columns and how each
field turns a value into a database value (``Field.get_db_prep_save``, so JSON, binary and date
columns are adapted exactly as the ORM adapts them on SQLite and PostgreSQL), then inserts a batch
with one ``executemany``, or one multi-row ``INSERT … RETURNING`` when the ids are needed. Values
pass through Django's cursor, so errors are Django's ``DatabaseError`` like any other query's.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cached_property

from django.db import connection, models

Prepare = Callable[[object], object]

_PLAIN = (models.CharField, models.TextField, models.IntegerField, models.BooleanField, models.ForeignKey)
"""Fields whose Python value the database driver takes as it is (the listener passes str, int and bool)."""


class Rows:
    """INSERT of rows of ``model`` given as ``{field name: value}``; a field left out takes its default."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model

    @cached_property
    def fields(self) -> list[models.Field]:
        return [field for field in self.model._meta.concrete_fields if not field.primary_key]

    @cached_property
    def names(self) -> list[str]:
        """Field names as rows give them: ``server_id`` for a foreign key, as in ``Model(server_id=…)``."""
        return [field.attname for field in self.fields]

    def preparers(self) -> list[Prepare | None]:
        """Per field, None when the value goes to the driver as it is, else how to adapt it (per connection)."""
        return [None if isinstance(field, _PLAIN) else (lambda value, field=field: field.get_db_prep_save(value, connection))
                for field in self.fields]

    def values(self, rows: Iterable[Mapping[str, object]]) -> list[tuple]:
        """Each row's values in column order, defaults filled in once per batch (one time for its dates)."""
        # As the ORM does: a field's default, "" for a text field without one, else None.
        defaults = {name: field.get_default() for name, field in zip(self.names, self.fields, strict=True)}
        columns = list(zip(self.names, self.preparers(), strict=True))
        prepared = []
        for row in rows:
            values = []
            for name, prepare in columns:
                value = row[name] if name in row else defaults[name]
                values.append(value if prepare is None or value is None else prepare(value))
            prepared.append(tuple(values))
        return prepared

    def sql(self, rows: int = 1, returning: bool = False) -> str:
        quote = connection.ops.quote_name
        placeholders = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        sql = (f"INSERT INTO {quote(self.model._meta.db_table)} ({', '.join(quote(field.column) for field in self.fields)}) "
               f"VALUES {', '.join([placeholders] * rows)}")
        return sql + f" RETURNING {quote(self.model._meta.pk.column)}" if returning else sql

    def insert(self, rows: list[Mapping[str, object]]) -> None:
        """Insert ``rows`` in the current transaction."""
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(self.sql(), self.values(rows))

    def insert_returning_ids(self, rows: list[Mapping[str, object]]) -> list[int]:
        """Insert ``rows`` and return their ids in the order of ``rows``.

        One multi-row ``INSERT … RETURNING`` per batch the backend allows. Rows are numbered in the
        order the VALUES list gives them (SQLite's rowid and PostgreSQL's sequence both increase along
        one statement), but ``RETURNING`` itself promises no order, so the ids are sorted.
        """
        values = self.values(rows)
        size = max(1, connection.ops.bulk_batch_size(self.fields, values))
        ids = []
        with connection.cursor() as cursor:
            for start in range(0, len(values), size):
                chunk = values[start:start + size]
                cursor.execute(self.sql(len(chunk), returning=True), [value for row in chunk for value in row])
                ids.extend(sorted(row[0] for row in cursor.fetchall()))
        return ids
