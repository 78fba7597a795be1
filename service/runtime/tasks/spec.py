"""A task's one home: what serving, both protocols, compression and the model card need to know of it.

Each task module defines one `TaskSpec`; `service.runtime.tasks.TASKS` lists them by name. A new task is one
module here (its spec), one in `compression/tasks/` (data, model head, metric) and one line in each registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from tokenizers import Tokenizer

from service.runtime.errors import BadInput, ConfigError
from service.runtime.tasks.base import PredictOptions, Task
from service.runtime.tasks.signature import Signature

if TYPE_CHECKING:
    from service.runtime.card import ModelCard

ProcessorBuilder = Callable[["ModelCard", Tokenizer, int, Sequence[str]], Task]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the code needs of one task, keyed by its name."""

    name: str
    summary: str  # one line for --help: what goes in, what comes out
    output_names: tuple[str, ...]  # the ONNX graph's outputs, in order
    per_token: bool  # the outputs have a sequence axis
    has_labels: bool  # the card lists class or tag names, in output index order
    accepts_text: bool  # a plain string is a valid request input (what the HTTP benchmark sends)
    build: ProcessorBuilder  # the serving processor over a configured tokenizer and the engine's inputs
    v1_inputs: tuple[Any, ...]  # types of one v1 request input (parts of the request schema's union)
    v1_output: type[BaseModel]  # one v1 output
    v2_signature: Callable[[ModelCard], Signature]  # tensors on the Open Inference Protocol
    settings: type[BaseModel] | None = None  # the card's task_settings, e.g. question-answering windows
    options: frozenset[str] = frozenset()  # the PredictOptions fields its answers read (top_k, ...); others refused

    def check_options(self, options: PredictOptions) -> None:
        """BadInput for an option the task's answers would not read (e.g. top_k for token classification), rather than
        ignoring it."""
        unread = [field.name for field in fields(options)
                  if getattr(options, field.name) is not None and field.name not in self.options]
        if unread:
            verb = "does" if len(unread) == 1 else "do"
            raise BadInput(f"{' and '.join(unread)} {verb} not apply to {self.name} models")

    def parse_settings(self, values: Mapping[str, Any]) -> BaseModel | None:
        """The task's settings from a card's or a command's values (defaults filled in); ConfigError when invalid."""
        if self.settings is None:
            if values:
                raise ConfigError(f"task {self.name} takes no task settings; got {sorted(values)}")
            return None
        try:
            return self.settings.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigError(f"task {self.name}: invalid task settings: {exc}") from exc
