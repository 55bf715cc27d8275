"""Input-form validation with Dify's rules and messages (`BaseAppGenerator._validate_inputs`)."""

from __future__ import annotations

from typing import Any

import pytest

from promptd.catalog.schema import FormField
from promptd.domain.forms import form_to_dify, text_values, validate_inputs, with_query
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


def refusal(form: list[FormField], inputs: dict[str, Any]) -> InputError:
    with pytest.raises(InputError) as info:
        validate_inputs(form, inputs)
    assert info.value.code == "invalid_param"
    return info.value


# --- required fields -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", [{}, {"name": ""}, {"name": None}], ids=["missing", "empty", "null"])
def test_a_required_field_that_is_missing_or_empty_is_refused(inputs: dict[str, Any]) -> None:
    error = refusal(FORM, inputs)
    assert error.message == "name is required in input form" and error.param == "name"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_required_number_left_blank_is_refused_as_required(value: Any) -> None:
    form = [FormField(type="number", variable="n", required=True)]
    assert refusal(form, {"n": value}).message == "n is required in input form"


def test_required_fields_accept_falsy_values_that_are_not_empty() -> None:
    form = [
        FormField(type="number", variable="n", required=True),
        FormField(type="checkbox", variable="ok", required=True),
    ]
    assert validate_inputs(form, {"n": 0, "ok": False}) == {"n": 0, "ok": False}


def test_the_first_bad_field_in_form_order_is_the_one_reported() -> None:
    assert refusal(FORM, {"ok": {}, "n": "lots"}).message == "name is required in input form"
    assert refusal(FORM, {"name": "A", "ok": {}, "n": "lots"}).param == "n"


# --- types -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"name": 5}, "(type 'text-input') name in input form must be a string"),
        ({"name": ["A"]}, "(type 'text-input') name in input form must be a string"),
        ({"name": "A", "bio": 1}, "(type 'paragraph') bio in input form must be a string"),
        ({"name": "A", "bio": {"text": "x"}}, "(type 'paragraph') bio in input form must be a string"),
        ({"name": "A", "tone": 1}, "(type 'select') tone in input form must be a string"),
        ({"name": "A", "tone": True}, "(type 'select') tone in input form must be a string"),
    ],
)
def test_text_paragraph_and_select_values_must_be_strings(inputs: dict[str, Any], message: str) -> None:
    assert refusal(FORM, inputs).message == message


def test_a_select_value_must_be_one_of_the_options() -> None:
    error = refusal(FORM, {"name": "A", "tone": "loud"})
    assert error.message == "tone in input form must be one of the following: ['formal', 'casual']"
    assert error.param == "tone"
    assert refusal(FORM, {"name": "A", "tone": "Formal"}).param == "tone"  # exact match only
    assert check({"name": "A", "tone": "formal"})["tone"] == "formal"


def test_text_longer_than_max_length_is_refused_and_max_length_itself_is_fine() -> None:
    assert check({"name": "abcde"})["name"] == "abcde"
    assert refusal(FORM, {"name": "abcdef"}).message == "name in input form must be less than 5 characters"
    paragraph = [FormField(type="paragraph", variable="p", max_length=2)]
    assert refusal(paragraph, {"p": "abc"}).message == "p in input form must be less than 2 characters"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("3", 3),
        ("-4", -4),
        (" 12 ", 12),
        ("2.5", 2.5),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        (7, 7),
        (1.5, 1.5),
        (0, 0),
    ],
)
def test_numbers_are_parsed_from_strings(raw: Any, parsed: Any) -> None:
    value = check({"name": "A", "n": raw})["n"]
    assert value == parsed and type(value) is type(parsed)


@pytest.mark.parametrize(
    "raw",
    [
        "lots",
        "1.2.3",
        "0x10",
        "3 apples",
        "nan",
        "inf",
        "1e999",
        True,
        False,
        [1],
        {"n": 1},
        float("inf"),
        float("nan"),
    ],
)
def test_anything_else_is_not_a_valid_number(raw: Any) -> None:
    error = refusal(FORM, {"name": "A", "n": raw})
    assert error.message == "n in input form must be a valid number" and error.param == "n"


@pytest.mark.parametrize("value", [True, False])
def test_a_checkbox_takes_a_boolean(value: bool) -> None:
    assert check({"name": "A", "ok": value})["ok"] is value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        *[(word, True) for word in ("true", "1", "yes", "on", "TRUE", " On ", "Yes\n")],
        *[(word, False) for word in ("false", "0", "no", "off", "False", " OFF ", "No")],
        (1, True),
        (1.0, True),
        (0, False),
        (0.0, False),
        (-0.0, False),
    ],
)
def test_a_checkbox_takes_the_words_and_numbers_dify_takes_for_a_boolean(raw: Any, value: bool) -> None:
    assert check({"name": "A", "ok": raw})["ok"] is value


@pytest.mark.parametrize("raw", ["maybe", "y", "t", 2, -1, 0.5, [True], ["yes"]])
def test_a_checkbox_keeps_any_other_value_as_dify_does(raw: Any) -> None:
    assert check({"name": "A", "ok": raw})["ok"] == raw


@pytest.mark.parametrize("raw", [{"on": True}, [{"on": True}], [1, {}]])
def test_a_checkbox_refuses_an_object_in_difys_words(raw: Any) -> None:
    error = refusal(FORM, {"name": "A", "ok": raw})
    assert error.message == "Invalid input type for ['ok']" and error.param == "ok"


def test_a_required_checkbox_takes_an_unticked_word() -> None:
    form = [FormField(type="checkbox", variable="ok", required=True)]
    assert validate_inputs(form, {"ok": "off"}) == {"ok": False}


# --- cleaning --------------------------------------------------------------------------------------------------


def test_optional_fields_left_out_take_their_default() -> None:
    assert check({"name": "Ann"}) == {"name": "Ann", "bio": "", "tone": "casual", "n": None, "ok": False}


def test_optional_fields_sent_empty_take_their_default_too() -> None:
    assert check({"name": "Ann", "bio": "", "tone": "", "n": "", "ok": None}) == check({"name": "Ann"})


def test_defaults_of_every_type_are_used_as_they_are() -> None:
    form = [
        FormField(type="text-input", variable="city", default="Paris"),
        FormField(type="number", variable="top", default=3),
        FormField(type="number", variable="ratio", default=0.5),
        FormField(type="checkbox", variable="formal", default=True),
        FormField(type="checkbox", variable="plain"),
    ]
    assert validate_inputs(form, {}) == {"city": "Paris", "top": 3, "ratio": 0.5, "formal": True, "plain": None}


def test_unknown_keys_are_dropped_and_the_result_follows_the_form() -> None:
    cleaned = check({"extra": 1, "ok": True, "name": "Ann", "__proto__": "x"})
    assert list(cleaned) == ["name", "bio", "tone", "n", "ok"]


def test_nul_bytes_are_stripped_from_strings() -> None:
    cleaned = check({"name": "A\x00n\x00", "bio": "\x00line\x00"})
    assert cleaned["name"] == "An" and cleaned["bio"] == "line"


# --- /parameters ---------------------------------------------------------------------------------------------


def test_the_form_is_described_the_way_dify_parameters_do() -> None:
    labelled = FormField(type="text-input", variable="city", label="City", required=True, max_length=48)
    assert form_to_dify([labelled, *FORM[1:]]) == [
        {"text-input": {"label": "City", "variable": "city", "required": True, "default": "", "max_length": 48}},
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
        {"number": {"label": "n", "variable": "n", "required": False, "default": ""}},
        {"checkbox": {"label": "ok", "variable": "ok", "required": False, "default": False}},
    ]


def test_each_form_item_is_a_single_key_object_and_options_are_a_copy() -> None:
    described = form_to_dify(FORM)
    assert all(len(item) == 1 for item in described)
    described[2]["select"]["options"].append("loud")
    assert FORM[2].options == ["formal", "casual"]


# --- file and file-list fields ----------------------------------------------------------------------------------

DOC = {"type": "document", "transfer_method": "local_file", "upload_file_id": "f1"}
PIC = {"type": "image", "transfer_method": "remote_url", "url": "https://example.com/a.png"}
FILES = [
    FormField(type="file", variable="doc", required=True, allowed_file_types=["document"]),
    FormField(type="file-list", variable="pics", max_length=2),
]


def test_file_fields_take_difys_mappings_as_they_are() -> None:
    assert validate_inputs(FILES, {"doc": DOC, "pics": [PIC, PIC]}) == {"doc": DOC, "pics": [PIC, PIC]}


@pytest.mark.parametrize("inputs", [{}, {"doc": ""}, {"doc": None}], ids=["missing", "empty", "null"])
def test_a_required_file_left_out_is_refused(inputs: dict[str, Any]) -> None:
    error = refusal(FILES, inputs)
    assert (error.message, error.param) == ("doc is required in input form", "doc")


@pytest.mark.parametrize("value", [None, "", []], ids=["missing", "empty", "no files"])
def test_an_optional_file_list_left_empty_is_no_value(value: Any) -> None:
    assert validate_inputs(FILES, {"doc": DOC, "pics": value})["pics"] is None
    required = [FormField(type="file-list", variable="pics", required=True)]
    assert refusal(required, {"pics": value}).message == "pics is required in input form"


@pytest.mark.parametrize("value", ["f1", [DOC], 3, True])
def test_a_file_field_takes_one_mapping(value: Any) -> None:
    error = refusal(FILES, {"doc": value})
    assert (error.message, error.param) == ("doc in input form must be a file", "doc")


@pytest.mark.parametrize("value", [PIC, "f1", [PIC, "f2"], [[PIC]]])
def test_a_file_list_takes_a_list_of_mappings(value: Any) -> None:
    error = refusal(FILES, {"doc": DOC, "pics": value})
    assert (error.message, error.param) == ("pics in input form must be a list of files", "pics")


def test_a_file_list_takes_at_most_max_length_files_in_difys_words() -> None:
    error = refusal(FILES, {"doc": DOC, "pics": [PIC, PIC, PIC]})
    assert (error.message, error.param) == ("pics in input form must be less than 2 files", "pics")


def test_inputs_are_checked_in_form_order() -> None:
    form = [FormField(type="text-input", variable="name", required=True), *FILES]
    assert refusal(form, {"doc": "x"}).message == "name is required in input form"


def test_a_file_variable_renders_as_nothing_in_a_template() -> None:
    checked = validate_inputs(FILES, {"doc": DOC, "pics": [PIC]})
    assert text_values(FILES, checked) == {"doc": "", "pics": ""}
    assert text_values(FORM, {"name": "Ann"}) == {"name": "Ann"}


def test_the_top_level_query_fills_an_empty_query_input() -> None:
    form = [FormField(type="paragraph", variable="query")]
    assert with_query(form, {"query": ""}, "asked") == {"query": "asked"}
    assert with_query(form, {"query": "given"}, "asked") == {"query": "given"}
    assert with_query(FILES, {}, "asked") == {}  # no query variable: the prompt gets it otherwise


def test_file_fields_are_described_with_difys_upload_keys() -> None:
    custom = FormField(
        type="file",
        variable="log",
        label="Log",
        required=True,
        allowed_file_types=["custom"],
        allowed_file_extensions=[".log"],
        allowed_file_upload_methods=["local_file"],
    )
    assert form_to_dify([custom, FILES[1]]) == [
        {
            "file": {
                "label": "Log",
                "variable": "log",
                "required": True,
                "default": "",
                "allowed_file_types": ["custom"],
                "allowed_file_extensions": [".log"],
                "allowed_file_upload_methods": ["local_file"],
            }
        },
        {
            "file-list": {
                "label": "pics",
                "variable": "pics",
                "required": False,
                "default": "",
                "max_length": 2,
                "allowed_file_types": ["image"],
                "allowed_file_extensions": [],
                "allowed_file_upload_methods": ["local_file", "remote_url"],
            }
        },
    ]


def test_a_file_list_without_max_length_takes_difys_five() -> None:
    assert FormField(type="file-list", variable="pics").max_length == 5
    assert FormField(type="file", variable="doc").max_length is None


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"type": "file", "max_length": 2}, "`max_length` is only for text-input, paragraph and file-list fields"),
        ({"type": "file-list", "max_length": 11}, "a file-list takes at most 10 files"),
        ({"type": "file", "allowed_file_types": ["custom"]}, 'type "custom" in `allowed_file_types` needs'),
        ({"type": "file", "default": "x"}, "a file field takes no `default`"),
        ({"type": "text-input", "allowed_file_types": ["image"]}, "`allowed_file_types` is only for file and"),
        ({"type": "paragraph", "allowed_file_upload_methods": ["local_file"]}, "`allowed_file_upload_methods` is"),
        ({"type": "file", "allowed_file_types": []}, "at least 1 item"),
        ({"type": "file", "allowed_file_types": ["pdf"]}, "Input should be 'image', 'document'"),
        ({"type": "file", "allowed_file_upload_methods": ["tool_file"]}, "Input should be 'remote_url'"),
    ],
)
def test_a_file_fields_keys_are_checked(field: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        FormField(variable="v", **field)
    assert message in str(info.value)
