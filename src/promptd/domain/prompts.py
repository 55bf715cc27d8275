"""System-prompt templates for the chat API: Jinja2 in a sandbox, every argument required. Pure, no I/O.

The sandbox refuses access to Python internals (`{{ ''.__class__ }}` and the like raise a SecurityError) and
ranges over MAX_RANGE items; here it also refuses powers and repetitions that would build huge numbers or
strings (`{{ 10 ** 10 ** 10 }}`, `{{ 'a' * 10 ** 9 }}`), and any error while rendering (`range(10**9)`, a
division by zero, a filter given the wrong type) is the request's InputError (400), never a server error.
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

#: the longest string or list a template may build by repetition, and the largest exponent of a power
MAX_REPEAT = 100_000
MAX_EXPONENT = 64


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise SecurityError(f"repetition longer than {MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


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
    except (ArithmeticError, TypeError, ValueError, LookupError, MemoryError, RecursionError) as exc:
        # range(10**9) (OverflowError), 1/0, a filter given the wrong type: the arguments make it fail
        raise InputError(
            f"system prompt template failed: {type(exc).__name__}: {exc}", param="system_prompt_args"
        ) from None
