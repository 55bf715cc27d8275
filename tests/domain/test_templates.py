"""Dify-style {{variable}} prompt templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from promptd.catalog.schema import FormField
from promptd.domain.templates import render_prompt, template_variables


def test_variables_are_replaced_by_their_inputs() -> None:
    assert render_prompt("Translate {{text}} into {{lang}}.", {"text": "hello", "lang": "Spanish"}) == (
        "Translate hello into Spanish."
    )


def test_a_variable_used_twice_is_replaced_twice() -> None:
    assert render_prompt("{{a}}-{{a}}", {"a": "x"}) == "x-x"


def test_unknown_variables_render_empty() -> None:
    assert render_prompt("Hi {{name}}, {{missing}}!", {"name": "Ann"}) == "Hi Ann, !"


def test_values_are_rendered_as_text() -> None:
    rendered = render_prompt("{{a}} {{b}} {{c}} {{d}} {{e}}", {"a": 2.5, "b": True, "c": None, "d": 0, "e": False})
    assert rendered == "2.5 true  0 false"


def test_text_that_is_not_a_variable_is_kept() -> None:
    template = "{single} {{ spaced }} {{1st}} {{}} {{a-b}} }}{{"
    assert render_prompt(template, {"single": "x", "spaced": "x", "1st": "x", "a-b": "x"}) == template


def test_a_value_cannot_inject_another_variable() -> None:
    assert render_prompt("{{q}}", {"q": "tell me {{secret}}", "secret": "s3cr3t"}) == "tell me {secret}"


def test_a_value_cannot_inject_its_own_variable_or_one_that_follows() -> None:
    rendered = render_prompt("{{a}} and {{b}}", {"a": "{{b}}", "b": "{{a}}"})
    assert rendered == "{b} and {a}"
    assert "s3cr3t" not in render_prompt("{{q}}", {"q": "{{secret}}{{secret}}", "secret": "s3cr3t"})


def test_template_variables_lists_each_name_once() -> None:
    assert template_variables("{{a}} {{ b }} {{c_1}} {a} {{a}} {{_x}}") == {"a", "c_1", "_x"}
    assert template_variables("no variables") == set()


def test_a_form_variable_of_any_accepted_length_is_a_template_variable() -> None:
    longest = "v" * 64
    FormField(type="paragraph", variable=longest)
    assert template_variables("{{" + longest + "}}") == {longest}
    assert render_prompt("{{" + longest + "}}", {longest: "ok"}) == "ok"
    # a longer name would never be replaced, so the catalog refuses it
    with pytest.raises(ValidationError, match="is not a variable name"):
        FormField(type="paragraph", variable="v" * 65)
    assert template_variables("{{" + "v" * 65 + "}}") == set()
