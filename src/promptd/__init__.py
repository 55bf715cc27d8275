"""promptd: a self-hosted LLM application server."""

from __future__ import annotations

__version__ = "0.1.0"

from promptd.app import create_app
from promptd.errors import PromptdError
from promptd.settings import Settings

__all__ = ["PromptdError", "Settings", "__version__", "create_app"]
