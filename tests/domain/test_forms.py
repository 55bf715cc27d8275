"""Input-form validation with Dify's rules and messages."""

from __future__ import annotations

from typing import Any

import pytest

from promptd.catalog.schema import FormField
from promptd.domain.forms import form_to_dify, validate_inputs
from promptd.errors import InputError

FORM = [
    FormField(type="text-input", variable="name", required=True, max_length=5),
    FormField(type="paragraph", variable="bio"),
    FormField(type="select", variable="tone", options=["formal", "casual"], default="casual"),
    FormField(type="number", variable="n"),
    FormField(type="checkbox", variable="ok", default=False),
]


def check(inputs: dict[str, Any]) -> dict[str, Any]:
    return validate_inputs(FORM, inputs)


def test_valid_inputs_are_cleaned_defaulted_and_unknown_keys_dropped() -> None:
    assert check({"name": "Ann\x00", "n": "3", "extra": 1}) == {
        "name": "Ann",
        "bio": "",
        "tone": "casual",
        "n": 3,
        "ok": False,
    }


@pytest.mark.parametrize(("raw", "parsed"), [("3", 3), ("2.5", 2.5), ("1e3", 1000.0), (7, 7), (1.5, 1.5), ("", None)])
def test_numbers_are_parsed_from_strings(raw: Any, parsed: Any) -> None:
    assert check({"name": "A", "n": raw})["n"] == parsed


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "name is required in input form"),
        ({"name": ""}, "name is required in input form"),
        ({"name": None}, "name is required in input form"),
        ({"name": 5}, "(type 'text-input') name in input form must be a string"),
        ({"name": "A", "bio": 1}, "(type 'paragraph') bio in input form must be a string"),
        ({"name": "A", "tone": 1}, "(type 'select') tone in input form must be a string"),
        ({"name": "A", "tone": "loud"}, "tone in input form must be one of the following: ['formal', 'casual']"),
        ({"name": "abcdef"}, "name in input form must be less than 5 characters"),
        ({"name": "A", "n": "lots"}, "n in input form must be a valid number"),
        ({"name": "A", "n": True}, "n in input form must be a valid number"),
        ({"name": "A", "n": [1]}, "n in input form must be a valid number"),
        ({"name": "A", "ok": "yes"}, "ok in input form must be a boolean"),
    ],
)
def test_bad_inputs_get_difys_messages(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        check(inputs)
    assert info.value.message == message and info.value.code == "invalid_param"


def test_the_form_is_described_the_way_dify_parameters_do() -> None:
    assert form_to_dify(FORM[:3]) == [
        {"text-input": {"label": "name", "variable": "name", "required": True, "default": "", "max_length": 5}},
        {"paragraph": {"label": "bio", "variable": "bio", "required": False, "default": ""}},
        {
            "select": {
                "label": "tone",
                "variable": "tone",
                "required": False,
                "default": "casual",
                "options": ["formal", "casual"],
            }
        },
    ]
