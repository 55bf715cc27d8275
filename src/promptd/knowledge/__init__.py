"""Knowledge bases: documents parsed, chunked and indexed off the request path, searched for prompts.

Design: docs/knowledge.md. The engine calls `promptd.knowledge.prompt.Grounding` (one search per call)."""
