"""Server settings (environment variables `OBERTA_*`, overridden by arguments) and the optional YAML file listing the
endpoints.

With no config file, every directory under `models_dir` that holds a `model.yaml` is served with defaults.
A config file looks like::

    endpoints:
      - model_dir: models/sst2-pruned     # relative to the config file's directory
        name: sst2                        # default: the card's name
        engine: auto                      # auto | deepsparse | onnxruntime
        max_batch_size: 16
        max_wait_ms: 5
        max_queue_items: 256              # default: the server's max_queue_items
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.runtime.card import CARD_FILE, ModelCard, load_card
from service.runtime.errors import ConfigError, MissingFile
from service.runtime.tasks.encoding import Truncation

ENV_PREFIX = "OBERTA_"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
EngineChoice = Literal["auto", "deepsparse", "onnxruntime"]


class Settings(BaseSettings):
    """Server-wide settings; each field can be set by the environment variable OBERTA_<FIELD NAME IN CAPITALS>, and
    keyword arguments win over the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to bind (OBERTA_HOST)")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on (OBERTA_PORT)")
    models_dir: Path = Field(
        default=Path("models"),
        description="directory whose subdirectories holding a model.yaml are served when no config file is given "
        "(relative to the working directory; OBERTA_MODELS_DIR)",
    )
    config: Path | None = Field(
        default=None, description="YAML file listing the endpoints to serve; replaces discovery (OBERTA_CONFIG)"
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="engine threads per model unless an endpoint sets its own; default: every physical core "
        "(OBERTA_THREADS)",
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="largest request body; larger ones get 413 (OBERTA_MAX_BODY_BYTES)"
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="longest time an inference request may take from admission to answer; then 504 "
        "(OBERTA_REQUEST_TIMEOUT_S)",
    )
    max_queue_items: int = Field(
        default=256,
        ge=1,
        description="per model, most inputs admitted and not yet answered unless an endpoint sets its own; "
        "a request that would exceed it is refused at once with overload_status (OBERTA_MAX_QUEUE_ITEMS)",
    )
    overload_status: int = Field(
        default=503, description="status of requests refused by a full queue: 503 or 429 (OBERTA_OVERLOAD_STATUS)"
    )
    retry_after_s: int = Field(
        default=1,
        ge=0,
        description="Retry-After seconds sent with overload and shutdown refusals (OBERTA_RETRY_AFTER_S)",
    )
    access_log: bool = Field(
        default=False,
        description="log a line per request (uvicorn's access log; OBERTA_ACCESS_LOG). Off by default: it took 3% of "
        "the event loop's time under load of short requests on 2 cores, and /metrics counts requests by model and "
        "status",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="when set (and not empty), inference and model routes need `Authorization: Bearer <key>` "
        "(OBERTA_API_KEY)",
    )
    auth_health: bool = Field(
        default=False, description="also require the key on health routes (OBERTA_AUTH_HEALTH)"
    )
    auth_metrics: bool = Field(default=False, description="also require the key on /metrics (OBERTA_AUTH_METRICS)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed by CORS, comma-separated in the environment; empty: CORS off "
        "(OBERTA_CORS_ORIGINS)",
    )
    shutdown_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="after SIGTERM, seconds during which the server still accepts connections but answers 503 to "
        "readiness and inference, so load balancers stop routing to it (OBERTA_SHUTDOWN_DELAY_S)",
    )

    @field_validator("overload_status", mode="before")
    @classmethod
    def _overload_status(cls, value: object) -> int:
        if str(value).strip() not in ("429", "503"):
            raise ValueError("overload_status must be 429 or 503")
        return int(str(value))

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def shutdown_timeout_s(self) -> int:
        """How long shutdown waits for requests in flight: their timeout plus a margin, in whole seconds."""
        return math.ceil(self.request_timeout_s) + 5


def validation_problems(error: ValidationError) -> str:
    """A pydantic validation error in one line: each problem as `location: message`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'value'}: {problem['msg']}" for problem in error.errors()
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the `OBERTA_*` environment, with the keyword overrides that are not None winning; raises
    ConfigError for invalid values."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise ConfigError(f"invalid settings (arguments or OBERTA_* variables): {validation_problems(exc)}") from None


class EndpointConfig(BaseModel):
    """How one model is served."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path = Field(description="model directory (model.yaml, ONNX, tokenizer.json)")
    name: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="name in URLs (/v1/models/NAME/predict); default: the card's"
    )
    engine: EngineChoice = Field(
        default="auto",
        description="inference engine; auto loads both when DeepSparse imports and supports this CPU and the card has "
        "both files, times them for a moment on DeepSparse's first compiled shape and keeps the faster (else the "
        "usable one); an explicit engine is loaded without measuring",
    )
    max_batch_size: int = Field(default=16, ge=1, description="most inputs per engine call")
    max_wait_ms: float = Field(
        default=5.0, ge=0, description="once the engine is free, longest time a batch gathered while it was busy waits "
        "for others to fill it (an input arriving at an idle engine runs at once)"
    )
    max_batch_tokens: int | None = Field(
        default=None,
        ge=1,
        description="most tokens per engine call, counted as the batch padded to its longest item (as "
        "text-embeddings-inference's --max-batch-tokens), so a long input does not make many short ones pad up to "
        "it; an item longer than the budget runs alone; default: no limit besides max_batch_size",
    )
    max_inputs_per_request: int = Field(
        default=64, ge=1, description="most inputs in one request; more are refused with 413"
    )
    max_rows_per_request: int = Field(
        default=256, ge=1, description="most engine rows one request may need, counted after tokenizing: one per "
        "input, but question answering cuts a long context into windows (a 67 KB context made 66, about 4 s on 2 "
        "cores); more are refused with 413, so a request's work stays bounded whatever the length of its texts"
    )
    max_queue_items: int | None = Field(
        default=None,
        ge=1,
        description="most inputs admitted and not yet answered (tokenizing, waiting for a batch, in the engine); "
        "a request that would exceed it is refused at once with 503 or 429 and Retry-After; "
        "default: the server's max_queue_items",
    )
    truncation: Truncation = Field(
        default="truncate",
        description="inputs longer than the model's max_length are cut to it (truncate) or refused with 422 (reject)",
    )
    threads: int | None = Field(default=None, ge=1, description="engine threads; default: the server's threads setting")
    sequence_buckets: list[int] | None = Field(
        default=None,
        description="DeepSparse only: sequence lengths compiled for, inputs are padded up to the nearest; "
        "default: 32, 64, 128, ... below max_length, then max_length",
    )
    batch_buckets: list[int] | None = Field(
        default=None,
        description="DeepSparse only: batch sizes compiled for, batches are padded up to the nearest; "
        "default: 1 and max_batch_size",
    )


class ServiceConfig(BaseModel):
    """The YAML config file."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[EndpointConfig] = Field(min_length=1, description="the models to serve")


@dataclass(frozen=True)
class Endpoint:
    """An endpoint resolved against its model directory: final name, absolute directory and card."""

    name: str
    model_dir: Path
    card: ModelCard
    config: EndpointConfig


def load_config_file(path: str | Path) -> ServiceConfig:
    """Read and validate a YAML config file; relative model directories are resolved against its directory."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"config file {path} not found")
    with path.open(encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with an 'endpoints' list")
    try:
        config = ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config file {path}: {validation_problems(exc)}") from None
    base = path.resolve().parent
    for endpoint in config.endpoints:
        endpoint.model_dir = base / endpoint.model_dir
    return config


def discover_endpoints(models_dir: str | Path) -> list[EndpointConfig]:
    """Default endpoints for every subdirectory of `models_dir` that holds a model card, sorted by directory."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise MissingFile(f"models directory {models_dir} not found; pass --models-dir or --config")
    found = [EndpointConfig(model_dir=path) for path in sorted(models_dir.iterdir()) if (path / CARD_FILE).is_file()]
    if not found:
        raise ConfigError(f"no model directories (holding a {CARD_FILE}) under {models_dir}")
    return found


def resolve_endpoints(settings: Settings) -> list[Endpoint]:
    """The endpoints to serve: from the config file when set, else discovered; cards read, names unique."""
    if settings.config:
        configs = load_config_file(settings.config).endpoints
    else:
        configs = discover_endpoints(settings.models_dir)
    endpoints: dict[str, Endpoint] = {}
    for config in configs:
        model_dir = config.model_dir.resolve()
        card = load_card(model_dir)
        name = config.name or card.name
        if not re.fullmatch(NAME_PATTERN, name):
            raise ConfigError(f"model name {name!r} of {model_dir} must be letters, digits, '.', '_' or '-'")
        if name in endpoints:
            raise ConfigError(f"two endpoints are named {name!r} ({endpoints[name].model_dir} and {model_dir})")
        check_model_files(name, model_dir, card)
        queue = config.max_queue_items or settings.max_queue_items
        if queue < config.max_inputs_per_request:
            raise ConfigError(
                f"model {name!r}: max_queue_items {queue} is below max_inputs_per_request "
                f"{config.max_inputs_per_request}, so the largest requests could never be admitted"
            )
        if config.max_rows_per_request < config.max_inputs_per_request:
            raise ConfigError(
                f"model {name!r}: max_rows_per_request {config.max_rows_per_request} is below "
                f"max_inputs_per_request {config.max_inputs_per_request}, and every input needs at least one row"
            )
        config = config.model_copy(update={"name": name, "model_dir": model_dir, "max_queue_items": queue})
        endpoints[name] = Endpoint(name=name, model_dir=model_dir, card=card, config=config)
    return list(endpoints.values())


def check_model_files(name: str, model_dir: Path, card: ModelCard) -> None:
    """Refuse to start when a file the card names is missing (a corrupt file is found when the model loads)."""
    named = {f"{engine} model": file for engine, file in card.files.items()} | {"tokenizer": card.tokenizer}
    for role, file in named.items():
        if not (model_dir / file).is_file():
            raise MissingFile(f"model {name!r}: the {role} file {model_dir / file} named in its card is missing")
