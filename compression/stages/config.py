"""What a compression run is asked to do, and the recipe it runs once the command line's overrides are applied."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from compression.precision import runnable_precision
from compression.recipe import Recipe, with_overrides
from compression.tasks import DataConfig

log = logging.getLogger(__name__)
Stage = Literal["all", "train", "export"]


@dataclass(frozen=True)
class CompressConfig:
    """What to compress, with which recipe, and where to put it.

    ``overrides`` replace recipe settings by dotted path (``{"training.max_length": 256}``, from command-line flags);
    they are logged and recorded in the card. ``data.max_length`` is not read: the recipe's setting is the one.
    """

    recipe: Recipe
    recipe_source: str
    model: str
    data: DataConfig
    output_dir: str
    name: str
    teacher: str | None = None
    model_dir: str | None = None
    threads: int | None = None
    command: str = ""
    stage: Stage = "all"
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The settings a run uses: the recipe with overrides applied, and the data settings that follow from it."""

    recipe: Recipe
    data: DataConfig
    overrides: dict[str, Any]


def plan(config: CompressConfig) -> Plan:
    """The effective recipe and data settings of a run (the config given is left as it was); bf16 training becomes
    fp32 on a machine without bfloat16 arithmetic."""
    recipe = with_overrides(config.recipe, config.overrides)
    for dotted, value in config.overrides.items():
        log.info("the command line overrides the recipe's %s: %s", dotted, value)
    precision = runnable_precision(recipe.training.precision)
    if precision != recipe.training.precision:
        recipe = with_overrides(recipe, {"training.precision": precision})
    return Plan(recipe, replace(config.data, max_length=recipe.training.max_length), dict(config.overrides))
