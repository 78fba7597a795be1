"""What every compression task provides: data loading, feature encoding, a model class, metrics and export outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from tokenizers import Encoding
from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase

from compression.base_models import loading_from
from compression.training_loop import DEFAULT_MAX_LENGTH
from compression.validation import Split, ValidationRecord
from service.runtime.errors import ConfigError
from service.runtime.tasks import DEFAULT_TASK, TaskSpec

Features = list[dict[str, Any]]
Rows = Sequence[Sequence[np.ndarray]]  # per feature, its row of every model output


@dataclass
class DataConfig:
    """Where the examples come from, how validation is carved and how examples become features.

    ``validation_split`` is how text classification carves validation without a validation file (`sentences` or
    `random`); None is its default: sentences for single texts, random for pairs.
    """

    train_file: str
    task: str = DEFAULT_TASK
    validation_file: str | None = None
    validation_split: Split | None = None
    validation_fraction: float = 0.05
    seed: int = 42
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_names: list[str] | None = None
    round_labels: bool = False
    retrieval_file: str | None = None  # sentence embedding: SQuAD file whose held-out articles score retrieval
    max_train_examples: int | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    task_settings: dict[str, Any] = field(default_factory=dict)  # the task's own, e.g. question-answering windows


@dataclass
class PreparedData:
    """Train and validation examples, how validation was made, and the label order (empty for question answering)."""

    train: list[Any]
    validation: list[Any]
    record: ValidationRecord
    labels: list[str]
    display_labels: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """Validation features (model inputs and labels) and the metric that scores a model's outputs on them."""

    features: Features
    score: Callable[[Rows], dict[str, float]]
    in_trainer: bool = True  # the Trainer can score it during training (False: the features carry no labels)

    def trainer_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        """The metric from the Trainer's evaluation predictions (in feature order)."""
        outputs = prediction.predictions
        arrays = [np.asarray(o) for o in (outputs if isinstance(outputs, tuple | list) else (outputs,))]
        return self.score([[array[row] for array in arrays] for row in range(len(self.features))])


class CompressionTask(Protocol):
    """One task of `oberta finetune`, `compress` and `export`; its name, outputs and card needs come from its spec."""

    spec: TaskSpec
    metric: str  # the metric a model of the task is judged by (higher is better), a key of its evaluation's scores

    @property
    def name(self) -> str:
        """The task's name."""
        ...

    @property
    def output_names(self) -> tuple[str, ...]:
        """Model outputs, in ONNX output order."""
        ...

    @property
    def per_token(self) -> bool:
        """Whether the outputs have a sequence axis."""
        ...

    def prepare(self, config: DataConfig) -> PreparedData:
        """Load train and validation examples and fix the label order."""
        ...

    def new_model(self, base: str, data: PreparedData) -> PreTrainedModel:
        """A model with a fresh task head on a base encoder (a local path)."""
        ...

    def load_model(self, path: str) -> PreTrainedModel:
        """A trained model of this task (eager attention, exportable)."""
        ...

    def check_model(self, model: PreTrainedModel, data: PreparedData, role: str) -> None:
        """Raise ValueError when the model's head does not fit the data's labels."""
        ...

    def card_settings(self, model: PreTrainedModel, given: dict[str, Any]) -> dict[str, Any]:
        """The served card's task_settings for this model, from the settings given for the run."""
        ...

    @property
    def needs_teacher(self) -> bool:
        """Whether the task learns only from a teacher (it has no labels)."""
        ...

    @property
    def loss_averages_examples(self) -> bool:
        """Whether each training loss is a mean over the batch's examples, so that a batch split into parts weighted
        by their share of the examples gives the same gradient (`TrainingLoop.micro_batch_tokens`)."""
        ...

    def features(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Features:
        """Training features: model inputs (unpadded) with labels."""
        ...

    def evaluation(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Evaluation:
        """Validation features and the task's metric over them."""
        ...

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[Features], Any]:
        """Pads a list of features into a batch of tensors."""
        ...


HEADS = ("ForSequenceClassification", "ForQuestionAnswering", "ForTokenClassification")


def new_head(auto_class: Any, base: str, labels: list[str]) -> PreTrainedModel:
    """A base encoder with a fresh head of the auto class over ``labels`` (eager attention, for export).

    A base whose head has other labels gets a fresh one.
    """
    id2label = dict(enumerate(labels))
    with loading_from(base):
        return auto_class.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            ignore_mismatched_sizes=True,
            attn_implementation="eager",
        )


def load_trained(auto_class: Any, path: str) -> PreTrainedModel:
    """The model at path with the auto class's head (eager attention); ConfigError when it was trained for another."""
    with loading_from(path):
        model = auto_class.from_pretrained(path, attn_implementation="eager")
    wanted = type(model).__name__
    other = [name for name in model.config.architectures or [] if name.endswith(HEADS) and name != wanted]
    if other:
        raise ConfigError(f"{path} holds a {other[0]}, not a {wanted}: pass the --task it was trained for")
    return model


def pick_inputs(encoding: Encoding, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """A tokenizers Encoding as unpadded model inputs (int32 arrays: a large training set stays small in memory)."""
    values = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask, "token_type_ids": encoding.type_ids}
    return {name: np.asarray(values[name], dtype=np.int32) for name in input_names}


class SpecTask:
    """What a compression task takes from its runtime spec: name and outputs."""

    spec: TaskSpec

    @property
    def name(self) -> str:
        """The task's name."""
        return self.spec.name

    @property
    def output_names(self) -> tuple[str, ...]:
        """Model outputs, in ONNX output order."""
        return self.spec.output_names

    @property
    def per_token(self) -> bool:
        """Whether the outputs have a sequence axis."""
        return self.spec.per_token

    def card_settings(self, model: PreTrainedModel, given: dict[str, Any]) -> dict[str, Any]:
        """The task settings given for the run (e.g. question-answering windows)."""
        return dict(given)

    @property
    def needs_teacher(self) -> bool:
        """Labels teach; a teacher is optional."""
        return False

    @property
    def loss_averages_examples(self) -> bool:
        """Cross-entropy and distillation over one distribution per example (text classification) or two per window
        (question answering), averaged over the batch."""
        return True
