"""Knowledge bases: documents parsed, chunked and indexed off the request path, searched for prompts.

Design: docs/knowledge.md. A face calls `promptd.knowledge.prompt.for_prompt` (one call per request)."""
