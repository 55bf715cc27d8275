"""Traces: a span per HTTP request and one per upstream attempt (GenAI semantic conventions), exported over
OTLP/HTTP to a real receiver in the test, which decodes the protobuf. The fake providers stand for an upstream
that fails (`down`) and one that answers (`echo`), so that a fallback makes two attempts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from promptd.tracing import traces_url
from tests.conftest import FAKE_CATALOG
from tests.serving import serve_app


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Receiver:
    """An OTLP/HTTP collector: keeps every span posted to /v1/traces, decoded, with its resource."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for rs in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            receiver.spans.append(
                                {
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "kind": s.kind,
                                    "status": s.status.code,
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "attributes": {a.key: _value(a.value) for a in s.attributes},
                                    "resource": resource,
                                }
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_collector_endpoints_become_the_traces_url() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_a_request_and_each_upstream_attempt_are_spans(tmp_path: Path, receiver: Receiver) -> None:
    catalog = json.loads(json.dumps(FAKE_CATALOG))
    catalog["providers"]["down"] = {"kind": "fake", "fail": "unavailable"}
    catalog["models"]["broken"] = {"provider": "down", "model": "x-1", "fallbacks": ["echo"], "retry": {"attempts": 0}}
    catalog["projects"]["demo"]["models"] = ["broken", "echo"]
    with serve_app(catalog, tmp_path / "data", otlp_endpoint=receiver.url) as server:
        r = httpx.post(
            server.v1 + "/completion-messages",
            json={"inputs": {"query": "hi"}, "user": "u", "max_tokens": 50},
            headers={**server.headers(), "X-Request-Id": "trace-me"},
        )
        assert r.status_code == 200
    # the server has stopped: its spans were flushed
    assert set(receiver.paths) == {"/v1/traces"}
    request = next(
        s for s in receiver.spans if s["attributes"].get("promptd.request_id") == "trace-me" and s["kind"] == 2
    )
    assert request["name"] == "POST /v1/completion-messages"
    assert request["attributes"]["http.response.status_code"] == 200
    assert request["attributes"]["promptd.project"] == "demo"
    assert request["resource"]["service.name"] == "promptd"
    attempts = sorted((s for s in receiver.spans if s["parent"] == request["span_id"]), key=lambda s: s["start"])
    assert [s["name"] for s in attempts] == ["chat x-1", "chat echo"]
    failed, answered = (s["attributes"] for s in attempts)
    assert all(s["trace_id"] == request["trace_id"] and s["kind"] == 3 for s in attempts)  # CLIENT spans
    assert failed["error.type"] == "provider_unavailable" and attempts[0]["status"] == 2  # ERROR
    assert failed["gen_ai.request.model"] == "x-1" and "gen_ai.response.model" not in failed
    assert answered["gen_ai.system"] == "fake" and answered["gen_ai.operation.name"] == "chat"
    assert answered["gen_ai.request.model"] == "echo" and answered["gen_ai.response.model"] == "echo"
    # "Echo: Answer briefly: hi": 4 output tokens
    assert answered["gen_ai.usage.output_tokens"] == 4 and answered["gen_ai.usage.input_tokens"] > 0
    assert answered["gen_ai.response.finish_reasons"] == ["stop"]
    assert answered["promptd.model"] == "echo" and answered["promptd.request_id"] == "trace-me"
    assert request["start"] <= attempts[0]["start"] <= attempts[0]["end"] <= attempts[1]["start"] + 1_000_000


def test_without_an_endpoint_opentelemetry_is_not_loaded(tmp_path: Path) -> None:
    code = f"""
import sys, httpx
from tests.conftest import FAKE_CATALOG
from tests.serving import serve_app
with serve_app(FAKE_CATALOG, __import__("pathlib").Path({str(tmp_path / "data")!r})) as server:
    r = httpx.post(server.v1 + "/completion-messages", json={{"inputs": {{"query": "hi"}}, "user": "u"}},
                   headers=server.headers())
    assert r.status_code == 200
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd())
    assert out.stdout.strip() == "[]"
