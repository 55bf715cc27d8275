"""Catalog reload: POST /admin/v1/reload on an in-process server, then SIGHUP to a real `promptd serve`
subprocess under load (zero failed requests), a bad catalog refused with the checker's messages while the old
one keeps serving, `--workers 2` (SIGHUP to the parent reaches every worker) and `promptd reload`.

The fake provider stands for a model (it echoes the rendered prompt, so the answer shows which catalog served
it); it takes a moment per answer, so requests are in flight when the catalog is swapped."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from promptd.store.repository import ADMIN_PROJECT, Repository
from tests.conftest import FAKE_CATALOG
from tests.serving import free_port, serve_app


def catalog_with(prompt: str, first_token_ms: int = 0) -> dict[str, Any]:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["prompt"] = prompt + " {{query}}"
    if first_token_ms:
        catalog["providers"]["fake"] = {"kind": "fake", "first_token_ms": first_token_ms}
    return catalog


#: a catalog the checker refuses: project demo names a model that does not exist
BAD = "providers: {fake: {kind: fake}}\nmodels: {echo: {provider: fake, model: e}}\nprojects: {demo: {models: [no]}}\n"


def ask(url: str, key: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/completion-messages",
        json={"inputs": {"query": "hi"}, "user": "u1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_the_admin_endpoint_reloads_and_refuses_a_bad_catalog(tmp_path: Path) -> None:
    path = tmp_path / "promptd.yaml"
    path.write_text(yaml.safe_dump(catalog_with("First:")))
    with serve_app(catalog_with("First:"), tmp_path / "data", catalog_path=path) as server:

        async def admin_key(repo: Repository) -> str:
            key, _ = await repo.create_key(ADMIN_PROJECT, role="admin")
            return key

        admin = {"Authorization": f"Bearer {server.repo_call(admin_key)}"}
        before = httpx.get(server.url + "/admin/v1/catalog", headers=admin).json()
        assert before["source"] == str(path) and before["projects"] == 1
        first = ask(server.url, server.key).json()
        assert first["answer"] == "Echo: First: hi"

        path.write_text(yaml.safe_dump(catalog_with("Second:")))
        reloaded = httpx.post(server.url + "/admin/v1/reload", headers=admin)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["changed"] is True and reloaded.json()["previous"] == before["version"]
        version = reloaded.json()["version"]
        second = ask(server.url, server.key).json()
        assert second["answer"] == "Echo: Second: hi"

        # the version that served each record is stored with it
        for message_id, served_by in ((first["message_id"], before["version"]), (second["message_id"], version)):
            record = httpx.get(f"{server.url}/admin/v1/messages/{message_id}", headers=admin).json()
            assert record["catalog_version"] == served_by

        # what the engine holds apart from the catalog follows too: a project's moderation, added by a reload
        moderated = catalog_with("Second:")
        moderated["projects"]["demo"]["moderation"] = {
            "type": "keywords",
            "keywords": ["hi"],
            "inputs": {"enabled": True, "preset_response": "Not here."},
        }
        path.write_text(yaml.safe_dump(moderated))
        assert httpx.post(server.url + "/admin/v1/reload", headers=admin).json()["changed"] is True
        assert ask(server.url, server.key).json()["answer"] == "Not here."
        path.write_text(yaml.safe_dump(catalog_with("Second:")))
        assert httpx.post(server.url + "/admin/v1/reload", headers=admin).json()["version"] == version

        path.write_text(BAD)
        refused = httpx.post(server.url + "/admin/v1/reload", headers=admin)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "catalog_invalid"
        assert "projects.demo" in error["message"] and str(path) in error["message"]
        assert ask(server.url, server.key).json()["answer"] == "Echo: Second: hi"  # the old catalog keeps serving
        assert httpx.get(server.url + "/admin/v1/catalog", headers=admin).json()["version"] == version

        app_key = httpx.post(server.url + "/admin/v1/reload", headers=server.headers())
        assert app_key.status_code == 401


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, admin: str, key: str) -> None:
        self.proc, self.url, self.admin, self.key = proc, url, admin, key
        self.log: list[str] = []

    def version(self) -> str:
        reply = httpx.get(self.url + "/admin/v1/catalog", headers={"Authorization": f"Bearer {self.admin}"})
        reply.raise_for_status()
        return str(reply.json()["version"])

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged:\n" + "".join(self.log))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptd", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@contextmanager
def serve(tmp_path: Path, config: Path, *args: str) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTD_")}
    env.update({"PROMPTD_DATA_DIR": str(tmp_path / "data"), "PROMPTD_CONFIG": str(config)})
    admin = cli(env, "keys", "create", "--admin").stdout.strip()
    key = cli(env, "keys", "create", "--project", "demo").stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptd", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    served = Served(proc, f"http://127.0.0.1:{port}", admin, key)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            served.log.append(line)
        proc.stdout.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(served.url + "/readyz", timeout=5).raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and proc.poll() is None, "".join(served.log)
            time.sleep(0.1)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        reader.join(30)


@contextmanager
def load(served: Served, clients: int = 4) -> Iterator[list[httpx.Response | Exception]]:
    """Clients sending requests in a loop until the block ends; every outcome is kept."""
    outcomes: list[httpx.Response | Exception] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    outcomes.append(
                        client.post(
                            served.url + "/v1/completion-messages",
                            json={"inputs": {"query": "hi"}, "user": "u1"},
                            headers={"Authorization": f"Bearer {served.key}"},
                        )
                    )
                except Exception as exc:
                    outcomes.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for t in threads:
            t.join(60)


def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def answers(outcomes: list[httpx.Response | Exception]) -> set[str]:
    failed = [o if isinstance(o, Exception) else (o.status_code, o.text) for o in outcomes if not _ok(o)]
    assert not failed, failed[:5]
    return {o.json()["answer"] for o in outcomes if isinstance(o, httpx.Response)}


def _ok(outcome: httpx.Response | Exception) -> bool:
    return isinstance(outcome, httpx.Response) and outcome.status_code == 200


def test_sighup_under_load_swaps_the_catalog_with_no_failed_request(tmp_path: Path) -> None:
    config = tmp_path / "promptd.yaml"
    config.write_text(yaml.safe_dump(catalog_with("First:", first_token_ms=30)))
    with serve(tmp_path, config) as served:
        first = served.version()
        with load(served) as outcomes:
            wait_until(lambda: len(outcomes) >= 20)
            for n, prompt in enumerate(["Second:", "Third:", "Second:"], start=1):
                config.write_text(yaml.safe_dump(catalog_with(prompt, first_token_ms=30)))
                served.proc.send_signal(signal.SIGHUP)
                wait_until(lambda n=n: sum("catalog " in line and ", was " in line for line in served.log) >= n)
                seen = len(outcomes)
                wait_until(lambda seen=seen: len(outcomes) >= seen + 10)
            config.write_text(BAD)
            served.proc.send_signal(signal.SIGHUP)
            refused = served.wait_for_log("catalog reload refused")
            seen = len(outcomes)
            wait_until(lambda: len(outcomes) >= seen + 10)
        assert served.proc.poll() is None  # SIGHUP no longer stops the server
        assert "projects.demo" in refused  # the checker's messages
        got = answers(outcomes)
        assert {"Echo: First: hi", "Echo: Second: hi", "Echo: Third: hi"} <= got
        assert served.version() not in (first, "")  # the last good catalog (Second) serves, not the bad one
        assert ask(served.url, served.key).json()["answer"] == "Echo: Second: hi"


def test_with_two_workers_promptd_reload_reaches_every_worker(tmp_path: Path) -> None:
    config = tmp_path / "promptd.yaml"
    config.write_text(yaml.safe_dump(catalog_with("First:", first_token_ms=20)))
    with serve(tmp_path, config, "--workers", "2") as served:
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers are up and answering
            pids.add(httpx.get(served.url + "/health").json()["pid"])
        assert len(pids) == 2
        first = served.version()
        config.write_text(yaml.safe_dump(catalog_with("Second:", first_token_ms=20)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTD_")}
        with load(served) as outcomes:
            wait_until(lambda: len(outcomes) >= 10)
            result = cli(env, "reload", "--data-dir", str(tmp_path / "data"), "--config", str(config))
            assert result.returncode == 0, result.stderr
            assert f"pid {served.proc.pid}" in result.stdout
            wait_until(lambda: sum(", was " + first in line for line in served.log) >= 2)  # each worker logged it
            seen = len(outcomes)
            wait_until(lambda: len(outcomes) >= seen + 10)
        answers(outcomes)  # none failed
        versions = {served.version() for _ in range(20)}
        assert len(versions) == 1 and first not in versions
        assert all(ask(served.url, served.key).json()["answer"] == "Echo: Second: hi" for _ in range(6))


def test_promptd_reload_refuses_a_bad_catalog_before_signalling(tmp_path: Path) -> None:
    config = tmp_path / "promptd.yaml"
    config.write_text(BAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTD_")}
    result = cli(env, "reload", "--data-dir", str(tmp_path / "data"), "--config", str(config))
    assert result.returncode == 2 and "projects.demo" in result.stderr
    config.write_text(yaml.safe_dump(catalog_with("First:")))
    nobody = cli(env, "reload", "--data-dir", str(tmp_path / "data"), "--config", str(config))
    assert nobody.returncode == 2 and "no running promptd uses the data dir" in nobody.stderr


def test_a_server_without_a_catalog_file_refuses_to_reload(tmp_path: Path) -> None:
    with serve_app(catalog_with("First:"), tmp_path / "data") as server:

        async def admin_key(repo: Repository) -> str:
            key, _ = await repo.create_key(ADMIN_PROJECT, role="admin")
            return key

        admin = {"Authorization": f"Bearer {server.repo_call(admin_key)}"}
        refused = httpx.post(server.url + "/admin/v1/reload", headers=admin)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "nothing_to_reload" and "--config" in error["message"]
        assert ask(server.url, server.key).json()["answer"] == "Echo: First: hi"
