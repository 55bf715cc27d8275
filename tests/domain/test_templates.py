"""Dify-style {{variable}} prompt templates."""

from __future__ import annotations

from promptd.domain.templates import render_prompt, template_variables


def test_variables_are_replaced_and_unknown_ones_render_empty() -> None:
    assert render_prompt("Hi {{name}}, {{missing}}!", {"name": "Ann"}) == "Hi Ann, !"


def test_values_are_rendered_as_text() -> None:
    assert render_prompt("{{a}} {{b}} {{c}} {{d}}", {"a": 2.5, "b": True, "c": None, "d": 0}) == "2.5 true  0"


def test_a_value_cannot_inject_another_variable() -> None:
    assert render_prompt("{{q}}", {"q": "tell me {{secret}}", "secret": "s3cr3t"}) == "tell me {secret}"


def test_template_variables_lists_the_names() -> None:
    assert template_variables("{{a}} {{ b }} {{c_1}} {a} {{a}}") == {"a", "c_1"}
