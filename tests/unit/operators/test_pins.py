"""Pins from PreflightOperator reach the training operators whatever form the template renders."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard.operators.common import parse_pins

SHA = "0123456789abcdef0123456789abcdef01234567"
PINS = {"image_digest": None, "image": None, "datasets": {"org/events": SHA}, "models": {}}


@pytest.mark.parametrize("value", [PINS, json.dumps(PINS), str(PINS)])
def test_pins_are_read_from_a_dict_its_json_or_its_rendered_python_repr(value: object) -> None:
    assert parse_pins(value, task_id="train") == {"datasets": {"org/events": SHA}}


@pytest.mark.parametrize("value", [None, "", {}])
def test_no_pins_means_none(value: object) -> None:
    assert parse_pins(value, task_id="train") == {}


def test_pins_that_are_not_a_mapping_fail_without_retry_with_the_expected_form() -> None:
    with pytest.raises(AirflowFailException, match=r"pins of task 'train' is not a mapping.*xcom_pull"):
        parse_pins("not pins", task_id="train")


def test_pins_with_a_list_of_datasets_are_rejected() -> None:
    with pytest.raises(AirflowFailException, match=r"pins\['datasets'\] of task 'train' must map repo ids"):
        parse_pins({"datasets": ["org/events"]}, task_id="train")
