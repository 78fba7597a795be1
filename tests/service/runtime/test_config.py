"""Settings from the environment, the YAML config file and model discovery."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.runtime.card import ModelCard, save_card
from service.runtime.config import Settings, discover_endpoints, load_config_file, load_settings, resolve_endpoints
from service.runtime.errors import ConfigError, MissingFile
from tests.serving import write_config


def _card_dir(root: Path, directory: str, name: str) -> Path:
    """A directory with a model card and empty files where it names them (enough for configuration, not loading)."""
    path = root / directory
    path.mkdir(parents=True)
    for file in ("model.onnx", "tokenizer.json"):
        (path / file).touch()
    card = ModelCard(
        name=name,
        task="text-classification",
        labels=["negative", "positive"],
        max_length=128,
        architecture="bert",
        inputs=["input_ids", "attention_mask", "token_type_ids"],
        files={"onnxruntime": "model.onnx", "deepsparse": "model.onnx"},
    )
    save_card(card, path)
    return path


def _set_environment(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)


def test_settings_read_environment_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_environment(monkeypatch, {"OBERTA_MODELS_DIR": "/srv/models", "OBERTA_THREADS": "2", "OBERTA_OTHER": "x"})
    settings = Settings()
    assert settings.models_dir == Path("/srv/models")
    assert settings.threads == 2
    assert settings.config is None
    overridden = load_settings(models_dir="elsewhere", config=None)
    assert (overridden.models_dir, overridden.threads) == (Path("elsewhere"), 2)
    monkeypatch.setenv("OBERTA_THREADS", "zero")
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(ConfigError, match=r"^invalid settings .*: threads: .*integer"):
        load_settings()


def test_host_and_port_come_from_the_environment_unless_arguments_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBERTA_HOST", raising=False)
    monkeypatch.delenv("OBERTA_PORT", raising=False)
    assert (Settings().host, Settings().port) == ("127.0.0.1", 8000)
    _set_environment(monkeypatch, {"OBERTA_HOST": "0.0.0.0", "OBERTA_PORT": "8123"})
    assert (Settings().host, Settings().port) == ("0.0.0.0", 8123)
    overridden = load_settings(host="::1", port=9000)
    assert (overridden.host, overridden.port) == ("::1", 9000)
    monkeypatch.setenv("OBERTA_PORT", "70000")
    with pytest.raises(ConfigError, match="port"):
        load_settings()


def test_discovery_serves_every_directory_with_a_card(tmp_path: Path) -> None:
    _card_dir(tmp_path, "b-model", "second")
    _card_dir(tmp_path, "a-model", "first")
    (tmp_path / "no-card").mkdir()
    endpoints = resolve_endpoints(Settings(models_dir=tmp_path))
    assert [endpoint.name for endpoint in endpoints] == ["first", "second"]
    first = endpoints[0]
    assert first.model_dir == (tmp_path / "a-model").resolve()
    assert first.config.engine == "auto"
    assert (first.config.max_batch_size, first.config.max_wait_ms, first.config.max_inputs_per_request) == (16, 5, 64)
    assert first.config.truncation == "truncate"
    assert first.config.max_queue_items == 256


def test_discovery_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MissingFile, match="not found"):
        discover_endpoints(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no model directories"):
        discover_endpoints(tmp_path)


def test_config_file_resolves_relative_directories_and_overrides_names(tmp_path: Path) -> None:
    _card_dir(tmp_path / "models", "sst2", "sst2-card-name")
    config_path = write_config(
        tmp_path / "serve.yaml",
        [
            {"model_dir": "models/sst2", "name": "sst2", "engine": "onnxruntime", "max_batch_size": 4},
            {"model_dir": "models/sst2", "name": "sst2-strict", "truncation": "reject"},
        ],
    )
    assert load_config_file(config_path).endpoints[0].model_dir == tmp_path / "models/sst2"
    endpoints = resolve_endpoints(Settings(config=config_path))
    assert [(e.name, e.config.engine, e.config.max_batch_size) for e in endpoints] == [
        ("sst2", "onnxruntime", 4),
        ("sst2-strict", "auto", 16),
    ]
    assert endpoints[1].config.truncation == "reject"
    assert endpoints[0].card.name == "sst2-card-name"


@pytest.mark.parametrize(
    ("endpoints", "error"),
    [
        ([{"model_dir": "m"}, {"model_dir": "m"}], "two endpoints are named 'card'"),
        ([{"model_dir": "m", "engine": "tensorrt"}], "engine"),
        ([{"model_dir": "m", "max_batch_size": 0}], "max_batch_size"),
        ([{"model_dir": "m", "unknown_field": 1}], "unknown_field"),
        ([{"model_dir": "m", "name": "a/b"}], "name"),
        ([{"model_dir": "m", "max_queue_items": 8, "max_inputs_per_request": 16}], "below max_inputs_per_request"),
        ([{"model_dir": "m", "max_rows_per_request": 8, "max_inputs_per_request": 16}], "every input needs at least"),
        ([], "endpoints"),
    ],
)
def test_bad_config_files_are_refused(tmp_path: Path, endpoints: list[dict[str, object]], error: str) -> None:
    _card_dir(tmp_path, "m", "card")
    with pytest.raises(ConfigError, match=error):
        resolve_endpoints(Settings(config=write_config(tmp_path / "serve.yaml", endpoints)))


@pytest.mark.parametrize(
    ("text", "error"), [("endpoints: [unclosed", "is not valid YAML"), ("- a list", "must be a mapping")]
)
def test_config_files_that_are_not_a_mapping_are_refused_in_one_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=error) as raised:
        load_config_file(path)
    assert "\n" not in str(raised.value)


def test_missing_config_file_and_card_are_reported(tmp_path: Path) -> None:
    with pytest.raises(MissingFile, match="config file"):
        resolve_endpoints(Settings(config=tmp_path / "absent.yaml"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"model\.yaml"):
        resolve_endpoints(Settings(config=write_config(tmp_path / "serve.yaml", [{"model_dir": "empty"}])))


def test_limits_auth_and_cors_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.max_body_bytes, defaults.request_timeout_s, defaults.max_queue_items) == (1 << 20, 30.0, 256)
    assert (defaults.overload_status, defaults.retry_after_s, defaults.shutdown_delay_s) == (503, 1, 0.0)
    assert (defaults.api_key, defaults.auth_health, defaults.auth_metrics, defaults.cors_origins) == (
        None, False, False, []
    )
    environ = {
        "OBERTA_MAX_BODY_BYTES": "65536",
        "OBERTA_REQUEST_TIMEOUT_S": "2.5",
        "OBERTA_MAX_QUEUE_ITEMS": "100",
        "OBERTA_OVERLOAD_STATUS": "429",
        "OBERTA_RETRY_AFTER_S": "3",
        "OBERTA_API_KEY": "s3cret",
        "OBERTA_AUTH_HEALTH": "true",
        "OBERTA_AUTH_METRICS": "1",
        "OBERTA_CORS_ORIGINS": "https://a.example, https://b.example",
        "OBERTA_SHUTDOWN_DELAY_S": "5",
    }
    _set_environment(monkeypatch, environ)
    settings = Settings()
    assert (settings.max_body_bytes, settings.request_timeout_s, settings.max_queue_items) == (65536, 2.5, 100)
    assert (settings.overload_status, settings.retry_after_s, settings.shutdown_delay_s) == (429, 3, 5.0)
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert (settings.auth_health, settings.auth_metrics) == (True, True)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    _set_environment(monkeypatch, {"OBERTA_API_KEY": "", "OBERTA_CORS_ORIGINS": ""})
    assert (Settings().api_key, Settings().cors_origins) == (None, [])
    for variable, value in [("OBERTA_OVERLOAD_STATUS", "500"), ("OBERTA_MAX_BODY_BYTES", "0")]:
        with monkeypatch.context() as patched:
            patched.setenv(variable, value)
            with pytest.raises(ValidationError):
                Settings()


def test_the_server_queue_default_applies_unless_an_endpoint_sets_its_own(tmp_path: Path) -> None:
    _card_dir(tmp_path, "m", "card")
    config = write_config(tmp_path / "serve.yaml", [{"model_dir": "m"}, {"model_dir": "m", "name": "own",
                                                                         "max_queue_items": 512}])
    endpoints = resolve_endpoints(Settings(config=config, max_queue_items=64))
    assert [endpoint.config.max_queue_items for endpoint in endpoints] == [64, 512]


@pytest.mark.parametrize("missing", ["model.onnx", "tokenizer.json"])
def test_a_missing_model_file_refuses_start_up(tmp_path: Path, missing: str) -> None:
    path = _card_dir(tmp_path, "m", "card")
    (path / missing).unlink()
    with pytest.raises(MissingFile, match=f"model 'card': the .* file .*{missing} named in its card is missing"):
        resolve_endpoints(Settings(models_dir=tmp_path))
