"""Validate a request's `inputs` against a project's input form, with Dify's own messages. Pure, no I/O.

The rules follow Dify's `BaseAppGenerator._validate_inputs`: a required variable that is missing or empty
is an error, text/select/paragraph values must be strings, select values one of the options, text no longer
than `max_length`, numbers parsed from strings; unknown keys are dropped and missing optional ones take
their default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from promptd.domain.values import FormFieldShape
from promptd.errors import InputError

__all__ = ["form_to_dify", "validate_inputs"]

TEXT_TYPES = ("text-input", "paragraph", "select")


def _empty(field: FormFieldShape, value: Any) -> bool:
    if value is None or value == "":
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


def _check(field: FormFieldShape, value: Any) -> Any:
    var = field.variable
    if _empty(field, value):
        if field.required:
            raise InputError(f"{var} is required in input form", param=var)
        if field.default is not None and field.default != "":
            return field.default
        return "" if field.type in TEXT_TYPES else None
    if field.type in TEXT_TYPES and not isinstance(value, str):
        raise InputError(f"(type '{field.type}') {var} in input form must be a string", param=var)
    if field.type == "number":
        value = _number(var, value)
    if field.type == "checkbox" and not isinstance(value, bool):
        raise InputError(f"{var} in input form must be a boolean", param=var)
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
        out.append({f.type: body})
    return out
