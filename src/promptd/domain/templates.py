"""Dify-style prompt templates: `{{variable}}` is replaced by the input of that name. Pure, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["CONTEXT_BLOCK", "VARIABLE_NAME", "render_prompt", "template_variables", "with_context"]

#: A variable's name. The catalog refuses longer or other names: `{{name}}` would never be replaced.
VARIABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
VARIABLE = re.compile(r"\{\{(" + VARIABLE_NAME + r")\}\}")


def template_variables(template: str) -> set[str]:
    return set(VARIABLE.findall(template))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # a value must not smuggle in a template variable of its own (as Dify does: {{x}} → {x})
    return VARIABLE.sub(r"{\1}", text) if "{{" in text else text


def render_prompt(template: str, inputs: Mapping[str, Any]) -> str:
    """Fill every `{{name}}` from `inputs`; unknown names render empty (the form check runs before this)."""
    return VARIABLE.sub(lambda m: _as_text(inputs.get(m.group(1))), template)


#: what a prompt that attaches knowledge but places no {{#context#}} / {{context}} gets before it (as Dify does)
CONTEXT_BLOCK = (
    "Use the following context, between <context></context> tags, as what you know.\n\n"
    "<context>\n{{context}}\n</context>\n\n"
    "When you answer:\n"
    "- If the context does not say, say that you do not know.\n"
    "- Do not mention that the information came from a context.\n"
    "- Answer in the language of the question.\n\n"
)


def with_context(template: str) -> str:
    """A prompt template of a project that attaches knowledge, its context placeholder made `{{context}}`:
    Dify's `{{#context#}}` becomes it, and a template with neither gets CONTEXT_BLOCK first."""
    template = template.replace("{{#context#}}", "{{context}}")
    return template if "{{context}}" in template else CONTEXT_BLOCK + template
