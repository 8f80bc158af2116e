"""Partitions as rows in a database: :class:`SqlSource`, one ``common.sql`` query per check.

Airflow is imported inside :meth:`SqlSource._hook` only, when a check runs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import PartitionObservation, PartitionStatus
from airflow_training_guard.partitions.expected import ExpectedPartitions, Renderer, is_template
from airflow_training_guard.partitions.registry import register_kind
from airflow_training_guard.partitions.sources.base import JINJA, PartitionSource, non_negative_int

#: Jinja that reads what a person triggering a run controls: ``params`` and ``dag_run.conf``.
_USER_CONTROLLED = re.compile(r"\bparams\b|\bdag_run\s*\.\s*conf\b|\bconf\s*[\[.]")


@register_kind("sql")
@dataclass(frozen=True)
class SqlSource(PartitionSource):
    """Partitions as rows in a database: one query returns which keys are there, with row counts.

    The query returns rows ``(partition_key, row_count)``, or ``(partition_key,)`` when counts do
    not matter. Build composite keys in SQL (``city || '|' || to_char(day, 'YYYY-MM-DD')``); a
    ``date`` value becomes ``YYYY-MM-DD`` and a ``timestamp`` ``YYYY-MM-DDTHH:MM:SS`` (with its offset
    unless it is UTC), the forms of the expected sets. Rows for keys that are not expected are
    ignored.

    :param conn_id: an Airflow connection whose hook is a ``common.sql`` ``DbApiHook``
        (PostgreSQL, MySQL, Snowflake, BigQuery ...).
    :param sql: the query. Jinja is rendered at run time.
    :param parameters: query parameters (templated values allowed), in the driver's style.
    :param min_rows: the least row count for a partition to be present (default 1; 0 only needs
        the key to be returned).
    :param expected_keys_parameter: when set, the name of a query parameter that receives the list
        of expected keys, e.g. ``WHERE partition_key = ANY(%(keys)s)`` with ``"keys"`` (PostgreSQL).
    :param hook_params: extra arguments for the hook.
    """

    conn_id: str
    sql: str
    _: KW_ONLY
    # Dicts and lists: left out of the hash (equal sources still hash equal).
    parameters: Mapping[str, Any] | Sequence[Any] | None = field(default=None, hash=False)
    min_rows: int = 1
    expected_keys_parameter: str | None = None
    hook_params: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        conn_id, sql, parameters = self.conn_id, self.sql, self.parameters
        if not isinstance(conn_id, str) or not conn_id:
            raise GuardConfigError(
                f"conn_id {conn_id!r} must name an Airflow connection, e.g. 'postgres_default'"
            )
        if not isinstance(sql, str) or not sql.strip():
            raise GuardConfigError(
                f"sql {sql!r} must be a query returning (partition_key, row_count) rows, e.g. "
                "'SELECT partition_key, count(*) FROM events WHERE day = %(day)s GROUP BY 1'"
            )
        if parameters is not None and (
            isinstance(parameters, str) or not isinstance(parameters, Mapping | Sequence)
        ):
            raise GuardConfigError(f"parameters {parameters!r} must be a dict or a list of query parameters")
        expected_keys_parameter = self.expected_keys_parameter
        if expected_keys_parameter is not None:
            if not isinstance(expected_keys_parameter, str) or not expected_keys_parameter.isidentifier():
                raise GuardConfigError(
                    f"expected_keys_parameter {expected_keys_parameter!r} must be a parameter name such as 'keys'"
                )
            if parameters is not None and not isinstance(parameters, Mapping):
                raise GuardConfigError(
                    "expected_keys_parameter needs named parameters: pass parameters as a dict (or leave it out)"
                )
        non_negative_int(self.min_rows, name="min_rows")
        # Own copies, in the form the trigger's kwargs carry them: a dict or a list.
        if parameters is not None:
            parameters = dict(parameters) if isinstance(parameters, Mapping) else list(parameters)
        object.__setattr__(self, "parameters", parameters)
        object.__setattr__(self, "hook_params", dict(self.hook_params or {}))

    def render(self, renderer: Renderer) -> SqlSource:
        def _render(value: Any) -> Any:
            if is_template(value):
                return renderer(value)
            if isinstance(value, Mapping):
                return {k: _render(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [_render(v) for v in value]
            return value

        return replace(self, sql=str(_render(self.sql)), parameters=_render(self.parameters))

    def describe(self) -> str:
        query = " ".join(self.sql.split())
        return f"SQL on {self.conn_id}: {query[:200]}; present = >= {self.min_rows} row(s)"

    def store_key(self) -> str:
        return f"{self.kind}:{self.conn_id}"

    def parse_time_warnings(self) -> list[str]:
        """Warn when ``sql`` renders ``params`` or ``dag_run.conf`` into the query text (issue 14).

        Whoever triggers a run sets both (the trigger form, the REST API), and text rendered into
        ``sql`` is executed as SQL: run conf ``{"table": "events; DROP TABLE x; --"}`` drops a table
        through ``SELECT ... FROM {{ params.table }}``. Values belong in bound ``parameters``.
        """
        found = [
            " ".join(block.split())
            for block in JINJA.findall(self.sql)
            if _USER_CONTROLLED.search(block) and not block.startswith("{#")
        ]
        if not found:
            return []
        return [
            f"SqlSource on {self.conn_id!r}: sql renders {', '.join(found)} into the query text; params and "
            "dag_run.conf are set by whoever triggers the run, so this is an SQL injection path (run conf "
            '{"table": "events; DROP TABLE x; --"} would drop a table). Pass values as bound parameters '
            "(parameters={'day': '{{ params.day }}'} with %(day)s in the query) and choose identifiers from a "
            "fixed set in the DAG file; see docs/partition-completeness.md, 'SQL built from run conf'"
        ]

    def _hook(self) -> Any:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(self.conn_id)
        hook: Any = connection.get_hook(hook_params=self.hook_params or None)  # type: ignore[no-untyped-call]
        if not callable(getattr(hook, "get_records", None)):
            raise GuardConfigError(
                f"connection {self.conn_id!r} gives a {type(hook).__name__}, which cannot run SQL; use a "
                "connection whose hook is a common.sql DbApiHook (postgres, mysql, sqlite ...)"
            )
        return hook

    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        parameters: Any = self.parameters
        if self.expected_keys_parameter:
            parameters = {**(parameters or {}), self.expected_keys_parameter: list(expected.keys())}
        rows = self._hook().get_records(self.sql, parameters=parameters) or []
        counts: dict[str, int | None] = {}
        for row in rows:
            values = tuple(row) if isinstance(row, Sequence) and not isinstance(row, str) else (row,)
            if not values:
                continue
            key = expected.match_key(values[0]) or _key_text(values[0])
            count = values[1] if len(values) > 1 else None
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
                try:
                    count = int(count)
                except (TypeError, ValueError):
                    raise GuardConfigError(
                        f"query on {self.conn_id!r} returned {values!r}; the second column must be the "
                        "partition's row count (an integer)"
                    ) from None
            if count is None and self.min_rows > 1:
                raise GuardConfigError(
                    f"query on {self.conn_id!r} returned rows without a row count, so min_rows={self.min_rows} "
                    "cannot be checked; return (partition_key, count(*)) rows"
                )
            previous = counts.get(key)
            counts[key] = count if previous is None else previous + (count or 0)
        return {key: self._verdict(count) for key, count in counts.items()}

    def _verdict(self, count: int | None) -> PartitionObservation:
        if count is None:
            return PartitionObservation(PartitionStatus.PRESENT)
        if count < self.min_rows:
            reason = "0 rows" if count == 0 else f"fewer than min_rows={self.min_rows} rows"
            return PartitionObservation(PartitionStatus.TOO_SMALL, reason=reason, rows=count)
        return PartitionObservation(PartitionStatus.PRESENT, rows=count)


def _key_text(value: Any) -> str:
    """A key as the expected sets write it, from what a database driver returns."""
    if isinstance(value, dt.datetime):
        # Keep every offset, +00:00 included: dropping a zero offset made London's winter keys
        # never match (issue 13). Only a naive value has none.
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
