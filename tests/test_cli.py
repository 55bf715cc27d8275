"""The CLI contract that scripts and docs rely on: check, init, keys create|list|revoke, env variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promptd.catalog.load import BUILTIN_CATALOG
from promptd.cli import main, make_settings

KEY = re.compile(r"^app-[A-Za-z0-9]{24,}$")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_check_accepts_the_built_in_catalog(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "<built-in catalog>: OK (1 provider, 2 models, 1 project)" in result.output


def test_check_reports_every_problem_with_file_and_path(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers: {local: {kind: local}}\n"
        "models: {smol: {provider: local, model: x, price: {input: 0.1}}}\n"
        "projects:\n"
        "  demo:\n"
        "    models: [smol]\n"
        "    prompt: hi\n"
        "    inputs: [{type: paragraf, variable: query}]\n"
    )
    result = runner.invoke(main, ["check", "--config", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: projects.demo.inputs[0].type:" in result.output
    assert f"{bad}: models.smol.price.input: prices must be decimal strings" in result.output


def test_init_writes_a_starter_catalog_that_checks(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "promptd.yaml"
    assert runner.invoke(main, ["init", str(target)]).exit_code == 0
    assert "#" in target.read_text()  # commented
    result = runner.invoke(main, ["check", "--config", str(target)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["init", str(target)])
    assert again.exit_code == 1 and "exists" in again.output


def test_keys_create_prints_the_key_alone_and_list_and_revoke_manage_it(runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    created = runner.invoke(main, ["keys", "create", "--project", "demo", *data])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert KEY.match(key), created.output
    assert created.stdout == key + "\n"

    listed = runner.invoke(main, ["keys", "list", *data])
    assert key[:12] + "..." in listed.output and "active" in listed.output
    assert key not in listed.output  # only the prefix is ever shown
    key_id = next(line.split()[0] for line in listed.output.splitlines() if key[:12] in line)

    revoked = runner.invoke(main, ["keys", "revoke", key_id, *data])
    assert revoked.exit_code == 0 and key_id in revoked.output
    assert "revoked" in runner.invoke(main, ["keys", "list", *data]).output


def test_keys_create_refuses_an_unknown_project(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["keys", "create", "--project", "nope", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no project named 'nope'" in result.output


def test_config_and_data_dir_come_from_the_environment(runner: CliRunner, tmp_path: Path) -> None:
    catalog = dict(BUILTIN_CATALOG)
    catalog["projects"] = {"shop": BUILTIN_CATALOG["projects"]["demo"]}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(catalog))
    env = {"PROMPTD_CONFIG": str(config), "PROMPTD_DATA_DIR": str(tmp_path / "envdata")}
    created = runner.invoke(main, ["keys", "create", "--project", "shop"], env=env)
    assert created.exit_code == 0, created.output
    assert (tmp_path / "envdata" / "promptd.db").exists()
    assert "shop" in runner.invoke(main, ["keys", "list"], env=env).output


def test_keys_create_takes_per_key_limits_and_list_shows_them(runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    limits = ["--rpm", "60", "--tpm", "5000", "--cost-per-day", "1.50", "--cost-per-month", "20"]
    created = runner.invoke(main, ["keys", "create", "--project", "demo", *limits, *data])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(main, ["keys", "list", *data]).output
    row = next(line for line in listed.splitlines() if created.stdout.strip()[:12] in line)
    assert "rpm=60,tpm=5000,cost_per_day=1.50,cost_per_month=20" in row and " app " in row


def test_keys_create_refuses_a_budget_that_is_not_a_positive_amount(runner: CliRunner, tmp_path: Path) -> None:
    for bad in ("abc", "-1", "0", "NaN"):
        result = runner.invoke(main, ["keys", "create", "--project", "demo", "--cost-per-day", bad])
        assert result.exit_code == 2 and "--cost-per-day" in result.output, (bad, result.output)


def test_an_admin_key_is_created_without_a_project(runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    created = runner.invoke(main, ["keys", "create", "--admin", "--name", "ops", *data])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert re.match(r"^adm-[A-Za-z0-9]{32}$", key)
    row = next(line for line in runner.invoke(main, ["keys", "list", *data]).output.splitlines() if key[:12] in line)
    assert " admin " in row and " * " in row
    both = runner.invoke(main, ["keys", "create", "--admin", "--project", "demo", *data])
    assert both.exit_code == 2 and "no project" in both.output


def test_a_dataset_key_is_created_without_a_project(runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    created = runner.invoke(main, ["keys", "create", "--dataset", *data])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert re.match(r"^dataset-[A-Za-z0-9]{32}$", key)
    row = next(line for line in runner.invoke(main, ["keys", "list", *data]).stdout.splitlines() if key[:12] in line)
    assert " dataset " in row and " * " in row
    both = runner.invoke(main, ["keys", "create", "--dataset", "--admin", *data])
    assert both.exit_code == 2 and "one or the other" in both.output


def test_keys_create_needs_a_project_unless_admin(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["keys", "create", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--project is required" in result.output


def test_keys_limit_replaces_a_keys_limits(runner: CliRunner, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    key = runner.invoke(main, ["keys", "create", "--project", "demo", "--rpm", "5", *data]).stdout.strip()
    changed = runner.invoke(main, ["keys", "limit", key, "--cost-per-day", "2.5", *data])
    assert changed.exit_code == 0, changed.output
    assert "cost_per_day=2.5" in changed.output
    row = next(line for line in runner.invoke(main, ["keys", "list", *data]).output.splitlines() if key[:12] in line)
    assert "cost_per_day=2.5" in row and "rpm=" not in row  # limits not given are removed
    admin = runner.invoke(main, ["keys", "create", "--admin", *data]).stdout.strip()
    refused = runner.invoke(main, ["keys", "limit", admin, "--rpm", "1", *data])
    assert refused.exit_code == 1 and "admin keys have no limits" in refused.output


@pytest.mark.parametrize(("value", "on"), [("true", True), ("1", True), ("on", True), ("false", False), ("0", False)])
def test_inline_remote_images_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, on: bool
) -> None:
    monkeypatch.setenv("PROMPTD_INLINE_REMOTE_IMAGES", value)
    assert make_settings(tmp_path).inline_remote_images is on
