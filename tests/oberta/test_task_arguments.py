"""`--task` and the task-settings flags come from the registry."""

from __future__ import annotations

import argparse

import pytest

from oberta.task_arguments import add_task_argument, add_task_settings_arguments, task_settings
from service.runtime.errors import ConfigError
from service.runtime.tasks import TASKS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_task_argument(parser)
    add_task_settings_arguments(parser)
    return parser


def test_every_task_is_a_choice_and_settings_fields_are_flags() -> None:
    parser = _parser()
    task_action = next(action for action in parser._actions if action.dest == "task")
    assert list(task_action.choices or []) == list(TASKS)
    args = parser.parse_args(["--task", "question-answering", "--doc-stride", "32"])
    assert task_settings(args) == {"doc_stride": 32}
    assert task_settings(parser.parse_args(["--task", "question-answering"])) == {}


def test_a_setting_of_another_task_is_refused() -> None:
    args = _parser().parse_args(["--task", "text-classification", "--max-answer-length", "5"])
    with pytest.raises(ConfigError, match="--max-answer-length do not apply to --task text-classification"):
        task_settings(args)


def test_an_invalid_setting_is_refused_before_any_work() -> None:
    args = _parser().parse_args(["--task", "question-answering", "--max-answer-length", "0"])
    with pytest.raises(ConfigError, match="max_answer_length"):
        task_settings(args)
