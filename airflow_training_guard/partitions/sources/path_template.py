"""Path templates: where each partition lives, ``"s3://bucket/events/date={date}/hour={hour}"``.

Checked when the DAG is parsed: placeholders are well formed, and every expected key gets its own
location (a fall-back day's two 02:00 hours under ``hour={hour}`` would otherwise share one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.expected import ExpectedPartitions, is_template
from airflow_training_guard.partitions.keys import RESERVED_FIELD_NAMES, key_fields
from airflow_training_guard.partitions.sources.base import JINJA

#: A ``{placeholder}`` outside Jinja.
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class PathTemplate:
    """A location per partition: ``"s3://bucket/events/date={date}/hour={hour}"``.

    Placeholders are those of :func:`~airflow_training_guard.partitions.keys.key_fields`
    (``{date}``, ``{hour}``, ``{utc_hour}``, ``{0}``, ``{city}``, ``{partition_key}`` ...). Jinja
    (``{{ var.value.data_root }}``) may appear too and is rendered by the sensor first.

    :param template: the template.
    :raises GuardConfigError: when it is empty, has no placeholder, a malformed placeholder or a
        stray brace.
    """

    def __init__(self, template: str, *, name: str = "path_template") -> None:
        if not isinstance(template, str) or not template.strip():
            raise GuardConfigError(
                f"{name} {template!r} must be a non-empty string such as "
                "'s3://bucket/events/date={date}/hour={hour}'"
            )
        self.template = template
        self.name = name
        outside = JINJA.sub("", template)
        found = PLACEHOLDER.findall(outside)
        for placeholder in found:
            if not (placeholder.isidentifier() or placeholder.isdigit()):
                raise GuardConfigError(
                    f"{name} {template!r} has the placeholder {{{placeholder}}}; placeholders are plain names "
                    "such as {date}, {hour} or {city}, or part positions such as {0}"
                )
        if "{" in PLACEHOLDER.sub("", outside) or "}" in PLACEHOLDER.sub("", outside):
            raise GuardConfigError(f"{name} {template!r} has an unmatched '{{' or '}}'")
        if not found:
            raise GuardConfigError(
                f"{name} {template!r} has no partition placeholder, so every partition would be looked for "
                "at the same place; add the parts that tell partitions apart, e.g. "
                "'.../date={date}/hour={hour}' (available: {partition_key}, {date}, {hour}, {0}, "
                "{<dimension name>} ...)"
            )
        self.placeholders = tuple(dict.fromkeys(found))

    @property
    def is_templated(self) -> bool:
        return is_template(self.template)

    def render(self, key: str, names: Sequence[str | None] = ()) -> str:
        """The location of ``key``.

        :raises GuardConfigError: when the template uses a placeholder the key does not provide.
        """
        return self._render(self.template, key, names)

    def _render(self, template: str, key: str, names: Sequence[str | None]) -> str:
        fields = key_fields(key, names)

        def substitute(match: re.Match[str]) -> str:
            placeholder = match.group(1)
            if placeholder not in fields:
                raise GuardConfigError(
                    _unknown_placeholder(self.name, self.template, placeholder, key, fields)
                )
            return fields[placeholder]

        return PLACEHOLDER.sub(substitute, template)

    def check_distinct(self, expected: ExpectedPartitions) -> None:
        """Check that every expected key gets its own location.

        Jinja parts are taken as the same for every key. A fall-back day's two 02:00 hours under
        ``date={date}/hour={hour}`` is the classic collision.

        :raises GuardConfigError: naming two keys that share a location and what tells them apart.
        """
        template = JINJA.sub("JINJA", self.template)
        names = expected.names
        seen: dict[str, str] = {}
        for key in expected:
            location = self._render(template, key, names)
            other = seen.setdefault(location, key)
            if other != key:
                raise GuardConfigError(_collision(self.name, self.template, other, key, location, names))

    def __repr__(self) -> str:
        return f"PathTemplate({self.template!r})"


def _unknown_placeholder(
    name: str, template: str, placeholder: str, key: str, fields: Mapping[str, str]
) -> str:
    hint = ""
    if placeholder in RESERVED_FIELD_NAMES - {"partition_key"}:
        hint = (
            f" ({{{placeholder}}} needs exactly one date or date-time part in the key, such as "
            "'2026-11-01' or '2026-11-01T09:00:00')"
        )
    available = ", ".join("{" + field + "}" for field in fields)
    return (
        f"{name} {template!r} uses {{{placeholder}}}, which partition key {key!r} does not provide{hint}; "
        f"available: {available}"
    )


def _collision(
    name: str, template: str, first: str, second: str, location: str, names: Sequence[str | None]
) -> str:
    one, two = key_fields(first, names), key_fields(second, names)
    differing = [field for field in one if field in two and one[field] != two[field]]
    best = [f for f in differing if not f.isdigit() and f != "partition_key"] or [
        f for f in differing if f.isdigit()
    ]
    fall_back = "offset" in differing and one.get("hour") == two.get("hour")
    return (
        f"{name} {template!r} gives partitions {first!r} and {second!r} the same location {location!r}, "
        "so one could pass for the other; add a placeholder that tells them apart: "
        + ", ".join("{" + field + "}" for field in best or ["partition_key"])
        + (
            " (a fall-back day has the same local hour twice: use {utc_date}/{utc_hour}, or add {offset})"
            if fall_back
            else ""
        )
    )
