"""docs/management-api.md keeps up with the routes: every endpoint of the management API has its heading."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from promptd.faces.admin.routes import routes

DOC = (Path(__file__).parents[2] / "docs" / "management-api.md").read_text()


def test_every_management_endpoint_is_documented() -> None:
    endpoints = [
        f"{method} /admin/v1{r.path}"
        for r in routes()
        if isinstance(r, Route)
        for method in sorted(r.methods or ())
        if method != "HEAD"
    ]
    assert len(endpoints) == 18
    missing = [e for e in endpoints if f"`{e}`" not in DOC]
    assert not missing, f"document these endpoints in docs/management-api.md: {missing}"
