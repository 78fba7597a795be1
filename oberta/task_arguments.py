"""Command-line arguments that come from the task registry: `--task` and each task's settings as flags.

A task's settings model (e.g. question answering's windows) becomes one flag per field, `--doc-stride` for
`doc_stride`, with the field's description as help; a flag left out takes the model's default.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.runtime.errors import ConfigError
from service.runtime.tasks import DEFAULT_TASK, TASKS, task_spec


def add_task_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """`--task`, with every task's one-line summary in the help, and the command's own note on them."""
    summaries = "; ".join(f"{name}: {spec.summary}" for name, spec in TASKS.items())
    parser.add_argument("--task", choices=list(TASKS), default=DEFAULT_TASK,
                        help=f"{summaries} (default {DEFAULT_TASK}){note}")


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_task_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of every task's settings, grouped by task."""
    seen: dict[str, str] = {}
    for name, spec in TASKS.items():
        if spec.settings is None:
            continue
        group = parser.add_argument_group(f"{name} settings")
        for field_name, field in spec.settings.model_fields.items():
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("from_model"):
                continue  # export reads it from the model
            flag = _flag(field_name)
            if flag in seen:
                raise ConfigError(f"tasks {seen[flag]} and {name} both define the setting {flag}")
            seen[flag] = name
            kind: type = field.annotation if field.annotation in (int, float, str) else str  # type: ignore[assignment]
            group.add_argument(flag, type=kind, dest=f"task_setting_{field_name}",
                               help=f"{field.description} (default {field.default})")


def task_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of `args.task` given on the command line (validated; defaults left to the settings model).

    A flag of another task's settings is refused rather than silently ignored.
    """
    given = {
        key.removeprefix("task_setting_"): value
        for key, value in vars(args).items()
        if key.startswith("task_setting_") and value is not None
    }
    spec = task_spec(args.task)
    own = set(spec.settings.model_fields) if spec.settings is not None else set()
    foreign = sorted(_flag(name) for name in given if name not in own)
    if foreign:
        raise ConfigError(f"{', '.join(foreign)} do not apply to --task {args.task}")
    spec.parse_settings(given)  # refuse invalid values now, before any work
    return given
