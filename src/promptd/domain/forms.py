"""Validate a request's `inputs` against a project's input form, with Dify's own messages. Pure, no I/O.

The rules follow Dify's `BaseAppGenerator._validate_inputs`: a required variable that is missing or empty
is an error, text/select/paragraph values must be strings, select values one of the options, text no longer
than `max_length`, numbers parsed from strings, a checkbox's words and 0/1 made booleans; unknown keys are
dropped and missing optional ones take their default.

`file` and `file-list` fields take Dify's file mappings (`{"type", "transfer_method", "upload_file_id" | "url"}`):
a `file` one object, a `file-list` a list of them (an empty list is no value), at most `max_length`. Which file
each mapping names, and whether its type and transfer method are allowed, is the face's to check (it resolves
them into content parts: faces/dify/attachments.py). In a prompt template a file variable renders as nothing
(Dify's `FileSegment.text` is ""): the file itself goes to the model as a content part (`text_values`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from promptd.domain.values import FormFieldShape
from promptd.errors import InputError

__all__ = ["FILE_FIELDS", "form_to_dify", "text_values", "validate_inputs", "with_query"]

TEXT_TYPES = ("text-input", "paragraph", "select")
FILE_FIELDS = ("file", "file-list")


def _empty(field: FormFieldShape, value: Any) -> bool:
    if value is None or value == "":
        return True
    if field.type == "file-list" and value == []:
        return True
    # Dify treats a blank number ("  ") as no value
    return field.type == "number" and isinstance(value, str) and not value.strip()


def _number(var: str, value: Any) -> int | float:
    """Dify parses numbers sent as strings; promptd also refuses what is not a finite number (1e999, nan)."""
    invalid = InputError(f"{var} in input form must be a valid number", param=var)
    if isinstance(value, bool):
        raise invalid
    if isinstance(value, str):
        try:
            value = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise invalid from None
    if not isinstance(value, int | float) or (isinstance(value, float) and not math.isfinite(value)):
        raise invalid
    return value


CHECKBOX_TRUE = frozenset({"true", "1", "yes", "on"})
CHECKBOX_FALSE = frozenset({"false", "0", "no", "off"})


def _checkbox(var: str, value: Any) -> Any:
    """A checkbox's value as Dify takes it: the strings true/1/yes/on and false/0/no/off (any case, spaces
    around) and the numbers 1 and 0 become booleans; any other value is kept as it came, as Dify keeps it,
    except an object (or a list holding one), which Dify then refuses in its own words."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in CHECKBOX_TRUE:
            return True
        if word in CHECKBOX_FALSE:
            return False
    elif isinstance(value, int | float):  # a boolean is one of these: True == 1, False == 0
        if value == 1:
            return True
        if value == 0:
            return False
    elif isinstance(value, dict) or (isinstance(value, list) and any(isinstance(item, dict) for item in value)):
        raise InputError(f"Invalid input type for {[var]}", param=var)
    return value


def _files(field: FormFieldShape, value: Any) -> Any:
    """A file field's value, as Dify checks it before it builds the files (its messages)."""
    var = field.variable
    if field.type == "file":
        if not isinstance(value, dict):
            raise InputError(f"{var} in input form must be a file", param=var)
        return value
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InputError(f"{var} in input form must be a list of files", param=var)
    if field.max_length and len(value) > field.max_length:  # Dify's words, for more than max_length
        raise InputError(f"{var} in input form must be less than {field.max_length} files", param=var)
    return value


def _check(field: FormFieldShape, value: Any) -> Any:
    var = field.variable
    if _empty(field, value):
        if field.required:
            raise InputError(f"{var} is required in input form", param=var)
        if field.default is not None and field.default != "":
            return field.default
        return "" if field.type in TEXT_TYPES else None
    if field.type in FILE_FIELDS:
        return _files(field, value)
    if field.type in TEXT_TYPES and not isinstance(value, str):
        raise InputError(f"(type '{field.type}') {var} in input form must be a string", param=var)
    if field.type == "number":
        value = _number(var, value)
    if field.type == "checkbox":
        value = _checkbox(var, value)
    if field.type == "select" and value not in (field.options or []):
        raise InputError(f"{var} in input form must be one of the following: {field.options}", param=var)
    if field.type in ("text-input", "paragraph") and field.max_length and len(value) > field.max_length:
        raise InputError(f"{var} in input form must be less than {field.max_length} characters", param=var)
    if isinstance(value, str):
        return value.replace("\x00", "")
    return value


def validate_inputs(form: Sequence[FormFieldShape], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the cleaned inputs (declared variables only) or raise InputError for the first bad one."""
    return {f.variable: _check(f, inputs.get(f.variable)) for f in form}


def with_query(form: Sequence[FormFieldShape], inputs: Mapping[str, Any], query: str) -> dict[str, Any]:
    """The inputs a request's form is checked with: the legacy top-level `query` fills a `query` variable the
    request left empty."""
    raw = dict(inputs)
    if query and not raw.get("query") and any(f.variable == "query" for f in form):
        raw["query"] = query
    return raw


def text_values(form: Sequence[FormFieldShape], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Checked inputs as a prompt template sees them: a file variable renders as nothing (its file is a part)."""
    values = dict(inputs)
    for f in form:
        if f.type in FILE_FIELDS:
            values[f.variable] = ""
    return values


def form_to_dify(form: Sequence[FormFieldShape]) -> list[dict[str, Any]]:
    """The `user_input_form` of Dify's /parameters: a list of single-key objects {type: {...}}."""
    out: list[dict[str, Any]] = []
    for f in form:
        body: dict[str, Any] = {
            "label": f.label or f.variable,
            "variable": f.variable,
            "required": f.required,
            "default": "" if f.default is None else f.default,
        }
        if f.max_length is not None:
            body["max_length"] = f.max_length
        if f.options is not None:
            body["options"] = list(f.options)
        if f.type in FILE_FIELDS:  # the keys Dify's console saves for a file variable
            body["allowed_file_types"] = list(f.allowed_file_types or [])
            body["allowed_file_extensions"] = list(f.allowed_file_extensions or [])
            body["allowed_file_upload_methods"] = list(f.allowed_file_upload_methods or [])
        out.append({f.type: body})
    return out
