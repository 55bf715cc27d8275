"""Catalog loading: every problem reported at once, each with its file and key path; secrets from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promptd.catalog.load import BUILTIN_CATALOG, STARTER_PATH, format_path, load_catalog, parse_catalog
from promptd.errors import CatalogError


def problems(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    """The problems parse_catalog reports; each line of the error names the file."""
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw, environ or {}, source="c.yaml")
    error = info.value
    first, *lines = error.message.splitlines()
    assert first == f"{len(error.problems)} problem(s) in the catalog:"
    assert lines == [f"  c.yaml: {p}" for p in error.problems]
    assert error.source == "c.yaml" and error.code == "catalog_invalid"
    return error.problems


def catalog(**project: Any) -> dict[str, Any]:
    """A valid catalog; keyword arguments are set on its project `demo`."""
    base: dict[str, Any] = {
        "providers": {"local": {"kind": "local"}},
        "models": {"smol": {"provider": "local", "model": "m"}},
        "projects": {"demo": {"models": ["smol"], "prompt": "{{query}}"}},
    }
    base["projects"]["demo"].update(project)
    return base


# --- valid catalogs ------------------------------------------------------------------------------------------


def test_the_built_in_catalog_is_valid() -> None:
    loaded = load_catalog(None, {})
    demo = loaded.projects["demo"]
    assert demo.default == "smol" and demo.mode == "completion"
    assert demo.inputs[0].variable == "query" and demo.inputs[0].required
    assert loaded.models["smol"].provider == "local" and loaded.providers["local"].kind == "local"
    assert BUILTIN_CATALOG["projects"]["demo"]["prompt"] == "Answer briefly: {{query}}"


def test_the_starter_file_is_valid_and_serves_the_same_demo() -> None:
    starter = load_catalog(STARTER_PATH, {})
    builtin = load_catalog(None, {})
    assert set(starter.projects) == set(builtin.projects) == {"demo"}
    assert starter.projects["demo"].prompt == builtin.projects["demo"].prompt
    assert starter.projects["demo"].inputs == builtin.projects["demo"].inputs
    assert starter.models["smol"].price == builtin.models["smol"].price


def test_a_minimal_catalog_loads() -> None:
    loaded = parse_catalog(catalog(), {})
    assert loaded.projects["demo"].default == "smol"


def test_a_section_left_empty_in_yaml_is_an_empty_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n  # local: {kind: local}\nmodels:\nprojects:\n")
    loaded = load_catalog(path, {})
    assert loaded.providers == {} and loaded.models == {} and loaded.projects == {}


def test_prices_may_be_written_as_integers_or_strings() -> None:
    raw = catalog()
    raw["models"]["smol"]["price"] = {"input": 0, "output": "1.25", "unit": "1K"}
    price = parse_catalog(raw, {}).models["smol"].price
    assert (price.input, price.output, price.unit) == ("0", "1.25", "1K")


# --- one problem of each kind ------------------------------------------------------------------------------------


def test_an_unknown_key_is_reported_with_its_path() -> None:
    assert problems(catalog(promt="typo")) == ["projects.demo.promt: unknown key (check its spelling)"]


def test_a_value_of_the_wrong_type_is_reported() -> None:
    raw = catalog()
    raw["providers"]["local"]["threads"] = "many"
    assert problems(raw) == [
        "providers.local.threads: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_a_value_outside_its_choices_is_reported_with_what_was_given() -> None:
    found = problems(catalog(inputs=[{"type": "paragraf", "variable": "query"}]))
    assert found == [
        "projects.demo.inputs[0].type: Input should be 'text-input', 'paragraph', 'select', 'number', "
        "'checkbox', 'file' or 'file-list' (not 'paragraf')"
    ]


def test_a_float_price_is_refused_because_it_is_not_exact() -> None:
    raw = catalog()
    raw["models"]["smol"]["price"] = {"input": 0.15}
    assert problems(raw) == [
        'models.smol.price.input: prices must be decimal strings (write "0.15", not 0.15) so they stay exact'
    ]


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ({"output": "abc"}, "models.smol.price.output: 'abc' is not a decimal number"),
        ({"output": "-1"}, "models.smol.price.output: '-1' must be a finite, non-negative decimal"),
        ({"unit": "1G"}, "models.smol.price.unit: Input should be '1', '1K' or '1M' (not '1G')"),
        ({"currency": "usd"}, "models.smol.price.currency: String should match pattern '^[A-Z]{3}$'"),
    ],
)
def test_bad_prices_are_reported(price: dict[str, Any], expected: str) -> None:
    raw = catalog()
    raw["models"]["smol"]["price"] = price
    assert problems(raw) == [expected]


def test_a_reference_to_an_unknown_provider_is_reported() -> None:
    raw = catalog()
    raw["models"]["smol"]["provider"] = "nowhere"
    assert problems(raw) == ["models.smol.provider: no provider named 'nowhere' (known: local)"]


def test_every_deployment_must_name_a_known_provider() -> None:
    raw = catalog()
    raw["models"]["smol"] = {"deployments": [{"provider": "local", "model": "a"}, {"provider": "gone", "model": "b"}]}
    assert problems(raw) == ["models.smol.deployments[1].provider: no provider named 'gone' (known: local)"]


def test_deployments_written_as_a_mapping_are_a_problem_not_a_crash() -> None:
    raw = catalog()
    raw["models"]["smol"] = {"deployments": {"provider": "local", "model": "m"}}
    found = problems(raw)
    assert any(p.startswith("models.smol.deployments: Input should be a valid list") for p in found)


def test_a_model_needs_a_provider_and_a_model() -> None:
    raw = catalog()
    raw["models"]["smol"] = {"provider": "local"}
    assert problems(raw) == ["models.smol: a model needs `provider` and `model`, or `deployments`"]


def test_fallbacks_must_name_other_models() -> None:
    raw = catalog()
    raw["models"]["smol"]["fallbacks"] = ["smol", "gone"]
    raw["models"]["smol"]["context_fallback"] = "missing"
    assert problems(raw) == [
        "models.smol.fallbacks[0]: no other model named 'smol'",
        "models.smol.fallbacks[1]: no other model named 'gone'",
        "models.smol.context_fallback: no other model named 'missing'",
    ]


def test_a_default_model_that_is_not_attached_is_reported() -> None:
    raw = catalog(default_model="big")
    raw["models"]["big"] = {"provider": "local", "model": "b"}
    assert problems(raw) == ["projects.demo.default_model: 'big' is not in this project's models"]


def test_a_project_model_that_does_not_exist_is_reported() -> None:
    assert problems(catalog(models=["smol", "gpt"])) == ["projects.demo.models[1]: no model named 'gpt'"]


def test_a_prompt_variable_that_no_input_declares_is_reported() -> None:
    found = problems(catalog(prompt="Hi {{who}} from {{city}}", inputs=[{"type": "text-input", "variable": "city"}]))
    assert found == ["projects.demo.prompt: uses {{who}} but no input declares variable 'who'"]


def test_query_may_be_used_by_the_prompt_without_an_input() -> None:
    assert parse_catalog(catalog(prompt="Answer: {{query}}"), {}).projects["demo"].inputs == []


def test_a_system_prompt_variable_that_no_input_declares_is_reported() -> None:
    found = problems(catalog(system_prompt="You speak {{lang}}. {{query}}"))
    assert found == [
        "projects.demo.system_prompt: uses {{lang}} but no input declares variable 'lang'",
        "projects.demo.system_prompt: uses {{query}} but no input declares variable 'query'",
    ]


def test_a_completion_project_needs_a_prompt() -> None:
    raw = catalog()
    del raw["projects"]["demo"]["prompt"]
    assert problems(raw) == ["projects.demo: a completion project needs a `prompt`"]


def test_a_select_without_options_is_reported() -> None:
    found = problems(catalog(inputs=[{"type": "select", "variable": "tone"}]))
    assert found == ["projects.demo.inputs[0]: a select field needs a non-empty `options` list"]
    found = problems(catalog(inputs=[{"type": "select", "variable": "tone", "options": []}]))
    assert found == ["projects.demo.inputs[0]: a select field needs a non-empty `options` list"]


def test_duplicate_variables_are_reported() -> None:
    twice = problems(catalog(inputs=[{"type": "paragraph", "variable": "q"}, {"type": "text-input", "variable": "q"}]))
    assert twice == ["projects.demo.inputs: variable 'q' is declared twice"]


def test_misplaced_field_options_are_reported() -> None:
    assert problems(catalog(inputs=[{"type": "number", "variable": "n", "max_length": 3}])) == [
        "projects.demo.inputs[0]: `max_length` is only for text-input, paragraph and file-list fields, not number"
    ]
    assert problems(catalog(inputs=[{"type": "paragraph", "variable": "p", "options": ["a"]}])) == [
        "projects.demo.inputs[0]: `options` is only for select fields, not paragraph"
    ]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            {"type": "select", "variable": "t", "options": ["a", "b"], "default": "c"},
            "the `default` 'c' is not one of the `options` ['a', 'b']",
        ),
        ({"type": "text-input", "variable": "t", "default": 5}, "the `default` of a text-input field must be a string"),
        (
            {"type": "text-input", "variable": "t", "max_length": 2, "default": "abc"},
            "the `default` is longer than `max_length` (2)",
        ),
        ({"type": "number", "variable": "t", "default": "many"}, "the `default` of a number field must be a number"),
        ({"type": "number", "variable": "t", "default": True}, "the `default` of a number field must be a number"),
        (
            {"type": "checkbox", "variable": "t", "default": "yes"},
            "the `default` of a checkbox field must be true or false",
        ),
    ],
)
def test_a_default_the_field_itself_would_refuse_is_reported(field: dict[str, Any], expected: str) -> None:
    assert problems(catalog(inputs=[field])) == [f"projects.demo.inputs[0]: {expected}"]


def test_a_default_must_be_a_plain_value() -> None:
    found = problems(catalog(inputs=[{"type": "text-input", "variable": "t", "default": ["a"]}]))
    assert found == ["projects.demo.inputs[0].default: must be a string, a number or a boolean"]


def test_a_bad_variable_name_is_reported() -> None:
    found = problems(catalog(inputs=[{"type": "text-input", "variable": "my var"}]))
    assert found == [
        "projects.demo.inputs[0].variable: 'my var' is not a variable name "
        "(a letter or _, then letters, digits or _; 64 at most)"
    ]


def test_a_bad_project_name_is_reported_as_a_key() -> None:
    raw = catalog()
    raw["projects"]["bad name!"] = {"models": ["smol"], "prompt": "x"}
    found = problems(raw)
    assert found == ["projects.bad name! (key): String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'"]


def test_a_provider_without_a_kind_or_with_an_unknown_kind_is_reported() -> None:
    raw = catalog()
    raw["providers"]["x"] = {"base_url": "http://h"}
    raw["providers"]["y"] = {"kind": "azure"}
    assert problems(raw) == [
        "providers.x: needs a `kind`: local, openai, anthropic or fake",
        "providers.y.kind: 'azure' is not one of 'local', 'openai', 'anthropic', 'fake'",
    ]


def test_provider_paths_leave_out_the_kind() -> None:
    raw = catalog()
    raw["providers"]["openai"] = {"kind": "openai", "base_url": "ftp://h", "api_key": "k"}
    assert problems(raw) == ["providers.openai.base_url: must start with http:// or https://"]


def test_speech_models_must_have_the_right_type() -> None:
    raw = catalog(audio={"speech_to_text": "smol", "text_to_speech": "nope"})
    assert problems(raw) == [
        "projects.demo.audio.speech_to_text: 'smol' is a chat model, not speech_to_text",
        "projects.demo.audio.text_to_speech: no model named 'nope'",
    ]


def test_a_campaign_id_must_be_a_uuid() -> None:
    raw = catalog(
        models=["smol"],
        metrics={"ok": {"kind": "bool"}},
        campaigns={"ab": {"id": "nope", "models": ["smol", "smol"], "traffic_split": 0.5, "metric": "ok"}},
    )
    assert problems(raw) == ["projects.demo.campaigns.ab.id: 'nope' is not a UUID"]


def test_tool_icons_are_urls_or_mappings() -> None:
    loaded = parse_catalog(
        catalog(tool_icons={"a": "https://i/a.png", "b": {"background": "#fff", "content": "x"}}), {}
    )
    assert loaded.projects["demo"].tool_icons["a"] == "https://i/a.png"
    assert problems(catalog(tool_icons={"c": 3})) == [
        "projects.demo.tool_icons: c: an icon is a URL or a mapping of strings ({background, content})"
    ]


# --- the environment ---------------------------------------------------------------------------------------------


def test_environment_references_are_interpolated() -> None:
    raw = catalog()
    raw["providers"]["openai"] = {"kind": "openai", "api_key": "Bearer ${KEY}", "base_url": "${URL:-http://h/v1}"}
    openai = parse_catalog(raw, {"KEY": "sk-1"}).providers["openai"]
    assert openai.kind == "openai" and openai.api_key == "Bearer sk-1" and openai.base_url == "http://h/v1"


def test_a_set_variable_wins_over_its_default() -> None:
    raw = catalog()
    raw["providers"]["openai"] = {"kind": "openai", "base_url": "${URL:-http://h/v1}"}
    openai = parse_catalog(raw, {"URL": "https://other/v1/"}).providers["openai"]
    assert openai.kind == "openai" and openai.base_url == "https://other/v1"


def test_an_unset_variable_without_a_default_is_reported_where_it_is_used() -> None:
    raw = catalog()
    raw["providers"]["openai"] = {"kind": "openai", "api_key": "${OPENAI_API_KEY}", "headers": {"X": "${A}${B:-b}"}}
    raw["projects"]["demo"]["tags"] = ["${TAG}"]
    assert problems(raw) == [
        "providers.openai.api_key: environment variable OPENAI_API_KEY is not set",
        "providers.openai.headers.X: environment variable A is not set",
        "projects.demo.tags[0]: environment variable TAG is not set",
    ]


def test_an_empty_default_is_a_default() -> None:
    raw = catalog(description="${DESC:-}")
    assert parse_catalog(raw, {}).projects["demo"].description == ""


# --- all problems at once ----------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    raw = catalog(
        bogus=1,
        default_model="big",
        prompt="{{query}} {{who}}",
        inputs=[{"type": "paragraf", "variable": "q"}, {"type": "select", "variable": "t"}],
    )
    raw["providers"]["openai"] = {"kind": "openai", "api_key": "${KEY}", "max_connections": "lots"}
    raw["models"]["smol"]["price"] = {"input": 0.1}
    raw["models"]["orphan"] = {"provider": "nowhere", "model": "x"}
    raw["projects"]["bad name!"] = {"models": ["smol"], "prompt": "x"}
    raw["projects"]["shop"] = {"models": ["orphan", "gpt"], "default_model": "gpt4", "prompt": "Hi {{who}}", "tgas": []}
    found = problems(raw)
    assert found == [
        "providers.openai.api_key: environment variable KEY is not set",
        "providers.openai.max_connections: Input should be a valid integer, unable to parse string as an integer",
        'models.smol.price.input: prices must be decimal strings (write "0.15", not 0.15) so they stay exact',
        "projects.demo.inputs[0].type: Input should be 'text-input', 'paragraph', 'select', 'number', "
        "'checkbox', 'file' or 'file-list' (not 'paragraf')",
        "projects.demo.inputs[1]: a select field needs a non-empty `options` list",
        "projects.demo.bogus: unknown key (check its spelling)",
        "projects.bad name! (key): String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
        "projects.shop.tgas: unknown key (check its spelling)",
        # the references between the entries that passed, reported along with the shape problems
        "models.orphan.provider: no provider named 'nowhere' (known: local)",
        "projects.shop.models[1]: no model named 'gpt'",
        "projects.shop.default_model: 'gpt4' is not in this project's models",
        "projects.shop.prompt: uses {{who}} but no input declares variable 'who'",
    ]


def test_a_reference_to_an_entry_with_problems_is_not_reported_again() -> None:
    raw = catalog(audio={"speech_to_text": "smol"})
    raw["providers"]["local"]["threads"] = 0
    raw["models"]["smol"]["price"] = {"unit": "1G"}
    raw["models"]["big"] = {"provider": "local", "model": "b", "fallbacks": ["smol"]}
    raw["projects"]["demo"]["models"] = ["smol", "big"]
    assert problems(raw) == [
        "providers.local.threads: Input should be greater than or equal to 1",
        "models.smol.price.unit: Input should be '1', '1K' or '1M' (not '1G')",
    ]


def test_a_section_that_is_not_a_mapping_hides_no_other_problem() -> None:
    raw = catalog(default_model="other")
    raw["models"] = ["smol"]
    assert problems(raw) == [
        "models: Input should be a valid dictionary",
        "projects.demo.default_model: 'other' is not in this project's models",
    ]


# --- files -------------------------------------------------------------------------------------------------------


def test_a_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "missing.yaml", {})
    assert info.value.problems == ["cannot read the file: No such file or directory"]
    assert info.value.source == str(tmp_path / "missing.yaml")


def test_a_directory_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the file"):
        load_catalog(tmp_path, {})


def test_a_yaml_syntax_error_is_a_catalog_error_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("providers:\n  local: {kind: local}\nprojects: [unclosed\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(broken, {})
    [problem] = info.value.problems
    assert problem.startswith("not valid YAML: line 4, column 1: expected ',' or ']'")
    assert str(broken) in info.value.message


def test_a_key_given_twice_is_a_catalog_error(tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("projects:\n  demo: {models: [a], prompt: x}\n  demo: {models: [b], prompt: y}\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(twice, {})
    assert info.value.problems == [
        "not valid YAML: line 3, column 3: found the key 'demo' twice (while reading a mapping)"
    ]


def test_a_file_that_is_not_utf8_is_a_catalog_error(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("projects: {démo: {}}\n".encode("latin-1"))
    with pytest.raises(CatalogError) as info:
        load_catalog(latin1, {})
    assert info.value.problems == ["not UTF-8 text (byte 12): invalid continuation byte"]


def test_a_file_that_is_not_a_mapping_is_a_catalog_error(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(listing, {})
    assert info.value.problems == ["the catalog must be a mapping with providers, models and projects"]


def test_a_file_with_problems_names_itself_on_every_line(tmp_path: Path) -> None:
    path = tmp_path / "promptd.yaml"
    path.write_text(
        "providers: {local: {kind: local, slots: 0}}\n"
        "models: {}\n"
        "projects:\n"
        "  demo: {models: [gpt], prompt: x}\n"
        "  shop: {models: [gpt]}\n"
    )
    with pytest.raises(CatalogError) as info:
        load_catalog(path, {})
    assert info.value.message.splitlines() == [
        "3 problem(s) in the catalog:",
        f"  {path}: providers.local.slots: Input should be greater than or equal to 1",
        f"  {path}: projects.shop: a completion project needs a `prompt`",
        f"  {path}: projects.demo.models[0]: no model named 'gpt'",
    ]


def test_paths_are_written_the_way_operators_read_them() -> None:
    assert format_path(("projects", "demo", "inputs", 0, "type")) == "projects.demo.inputs[0].type"
    assert format_path(("providers", "x", "openai", "base_url")) == "providers.x.base_url"
    assert format_path(("projects", "bad name!", "[key]")) == "projects.bad name! (key)"
    assert format_path(()) == "(top level)"
