"""Templates into messages: a filled-in input form through the project's prompt, the system-prompt template
with its arguments, and which tools go upstream. Pure: the catalog in, messages out.
"""

from __future__ import annotations

from typing import Any

from promptd.catalog.schema import Catalog, ModelConfig, ProjectConfig
from promptd.domain.forms import text_values, validate_inputs, with_query
from promptd.domain.prompts import render_system_prompt
from promptd.domain.templates import render_prompt, template_variables, with_context
from promptd.engine.call import ChatCall, FormInput, ToolSwitches
from promptd.errors import InputError
from promptd.types import ContentPart, Message, last_user_text

__all__ = ["Prompt", "render"]


class Prompt:
    """A call's rendered prompt: the messages sent upstream, and what the record keeps of the question."""

    __slots__ = ("inputs", "messages", "query", "tools")

    def __init__(
        self,
        messages: list[Message],
        query: str | None,
        inputs: dict[str, Any] | None,
        tools: list[dict[str, Any]] | None,
    ) -> None:
        self.messages = messages
        self.query = query
        self.inputs = inputs
        self.tools = tools


def render(catalog: Catalog, project_name: str, model_key: str, call: ChatCall) -> Prompt:
    project = catalog.projects[project_name]
    model = catalog.models[model_key]
    tools = _tools(project, call.tools)
    if call.form is not None:
        messages, query, inputs = _form(project, model, call.form)
        return Prompt(messages, query, inputs, tools)
    messages = call.messages
    template = model.system_prompt_template or project.system_prompt_template
    if template is not None:
        messages = [Message("system", render_system_prompt(template, call.system_prompt_args or {})), *messages]
    return Prompt(messages, last_user_text(messages), None, tools)


def _form(project: ProjectConfig, model: ModelConfig, form: FormInput) -> tuple[list[Message], str, dict[str, Any]]:
    """Validate the inputs against the form and render the prompt. The legacy top-level `query` fills a `query`
    variable the request left empty, or else is appended to the prompt. The record's question is the `query`
    input when the form has one, else the top-level query, else the rendered prompt."""
    template = with_context(project.prompt or "") if form.context is not None else project.prompt or ""
    form_vars = {f.variable for f in project.inputs}
    inputs = validate_inputs(project.inputs, with_query(project.inputs, form.inputs, form.query))
    shown = text_values(project.inputs, inputs)  # a file variable renders as nothing: its file is a part
    values = dict(shown)
    if "query" not in form_vars:
        values["query"] = form.query
    values["context"] = form.context or ""
    text = render_prompt(template, values)
    if form.query and "query" not in form_vars and "query" not in template_variables(template):
        text = f"{text}\n\n{form.query}" if text else form.query
    content: str | list[ContentPart] = text
    if form.attachments:
        kinds = {part.get("type") for part in form.attachments}
        if "image_url" in kinds and not model.vision:
            raise InputError("The model of this app does not accept images (it is not vision-capable).", param="files")
        if "video_url" in kinds and not model.video:
            msg = "The model of this app does not accept video (a model declared `video: true` would)."
            raise InputError(msg, param="files")
        content = [{"type": "text", "text": text}, *form.attachments]
    messages = []
    if project.system_prompt:
        messages.append(Message("system", render_prompt(project.system_prompt, shown)))
    messages.append(Message("user", content))
    asked = inputs.get("query") if "query" in form_vars else None
    query = asked if isinstance(asked, str) and asked else (form.query or text)
    return messages, query, inputs


def _tools(project: ProjectConfig, switches: ToolSwitches | None) -> list[dict[str, Any]] | None:
    """The OpenAI `tools` list sent upstream: the project's tools switched by `use_tools` and per-id overrides,
    plus any OpenAI function definitions the client sent itself."""
    declared = project.tools
    if switches is None:
        if not declared:
            return None  # the common case, without building the default switches each call
        switches = ToolSwitches()
    on = {
        name for name, tool in declared.items() if (tool.enabled if switches.use_tools is None else switches.use_tools)
    }
    for tool_id, enabled in switches.overrides.items():
        if tool_id not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InputError(f"tools: unknown tool id {tool_id!r} (project tools: {known})", param="tools")
        (on.add if enabled else on.discard)(tool_id)
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": declared[name].description,
                "parameters": declared[name].parameters,
            },
        }
        for name in declared
        if name in on
    ]
    return (tools + switches.client_tools) or None
