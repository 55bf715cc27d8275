"""System-prompt templates for the chat API: Jinja2 in a sandbox, every argument required. Pure, no I/O.

The sandbox refuses access to Python internals (`{{ ''.__class__ }}` and the like raise a SecurityError), and
`StrictUndefined` turns a missing argument into an error that names it instead of an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from promptd.errors import InputError

__all__ = ["render_system_prompt", "template_arguments"]

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def _compile(source: str) -> Any:
    return _ENV.from_string(source)


def template_arguments(source: str) -> set[str]:
    """The top-level names a template uses (its arguments)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(_ENV.parse(source)))


def render_system_prompt(source: str, args: Mapping[str, Any]) -> str:
    try:
        return str(_compile(source).render(**args))
    except UndefinedError as exc:
        missing = sorted(template_arguments(source) - set(args))
        name = missing[0] if missing else str(exc.message)
        raise InputError(
            f"system_prompt_args: missing argument {name!r} for the system prompt template", param="system_prompt_args"
        ) from None
    except SecurityError as exc:
        raise InputError(f"system prompt template refused: {exc}", param="system_prompt_args") from None
    except TemplateError as exc:
        raise InputError(f"system prompt template failed: {exc}", param="system_prompt_args") from None
