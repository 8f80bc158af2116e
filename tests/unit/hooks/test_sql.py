"""engine_for: connection ids and SQLAlchemy URLs, told apart; passwords never in its messages."""

from __future__ import annotations

import pytest

from airflow_training_guard.hooks.sql import (
    SqlConnectionError,
    engine_for,
    is_connection_id,
    safe_database_name,
)
from airflow_training_guard.promotion import check_registry_url

PASSWORD = "Sesame-4711-Secret"


@pytest.mark.parametrize("value", ["ledger_db", "tg-ledger.prod", "postgres_default"])
def test_connection_ids_are_recognised(value: str) -> None:
    assert is_connection_id(value)


@pytest.mark.parametrize(
    "value", ["sqlite:////tmp/x.db", "sqlite://", "postgresql+psycopg://u@h/db", "mysql://u@h/db"]
)
def test_urls_are_not_connection_ids(value: str) -> None:
    assert not is_connection_id(value)


def test_a_url_engine_is_pooled_once_per_url_and_process(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert engine_for(url) is engine_for(url)


def test_safe_database_name_hides_the_password_of_a_url() -> None:
    shown = safe_database_name(f"postgresql+psycopg://ledger:{PASSWORD}@db.internal:5432/ml")
    assert PASSWORD not in shown
    assert shown == "postgresql+psycopg://ledger:***@db.internal:5432/ml"


def test_a_malformed_url_is_refused_without_its_password() -> None:
    """A typo in a URL must not print the password that follows it."""
    with pytest.raises(SqlConnectionError, match="not a SQLAlchemy URL") as err:
        engine_for(f"postgresql+nosuchdriver://ledger:{PASSWORD}@db/ml")
    assert PASSWORD not in str(err.value)


def test_a_registry_that_is_neither_url_nor_connection_id_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError, match="id of an Airflow SQL connection") as err:
        check_registry_url(f"postgres//ledger:{PASSWORD}@db/ml")
    assert PASSWORD not in str(err.value)


def test_a_connection_id_is_a_valid_registry() -> None:
    check_registry_url("registry_db")


def test_an_empty_value_is_refused_with_both_forms_named() -> None:
    with pytest.raises(SqlConnectionError, match=r"connection id .* nor a SQLAlchemy URL"):
        engine_for("  ")


def test_a_value_that_is_not_even_a_url_is_shown_without_its_password() -> None:
    assert safe_database_name("postgres//ledger:Hidden-2024-Pw@db/ml") == "postgres//ledger:***@db/ml"
