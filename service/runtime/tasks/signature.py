"""A task's tensors on the Open Inference Protocol (v2): which BYTES inputs make its request inputs, and which output
tensors its answers fill. Protocol-neutral: the HTTP layer reads and writes the tensors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.runtime.errors import ProtocolError
from service.runtime.tasks.base import PredictOptions

Answers = Sequence[Mapping[str, Any]]
Parameters = Mapping[str, Any]


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of the signature; inputs are [-1] BYTES, one element per request input."""

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)
    optional: bool = False


def no_options(_: Parameters) -> PredictOptions:
    """Options of a task that takes no request parameters."""
    return PredictOptions()


@dataclass(frozen=True)
class Signature:
    """A task's tensors and the conversions between them and the task's inputs and answers."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    build_inputs: Callable[[Mapping[str, list[str]]], list[object]]
    build_outputs: Callable[[Answers], dict[str, np.ndarray]]
    build_options: Callable[[Parameters], PredictOptions] = no_options

    def task_inputs(self, elements: Mapping[str, list[str]]) -> list[object]:
        """The task's inputs from the request's decoded input tensors; raises ProtocolError."""
        names = [spec.name for spec in self.inputs]
        unknown = [name for name in elements if name not in names]
        missing = [spec.name for spec in self.inputs if not spec.optional and spec.name not in elements]
        if unknown or missing:
            raise ProtocolError(f"inputs {sorted(elements)} do not match the model's: {names} (optional: "
                                f"{[spec.name for spec in self.inputs if spec.optional]})")
        sizes = {name: len(values) for name, values in elements.items()}
        if len(set(sizes.values())) > 1:
            raise ProtocolError(f"every input needs as many elements; got {sizes}")
        if not any(sizes.values()):
            raise ProtocolError("the inputs hold no elements")
        return self.build_inputs(elements)

    def requested(self, names: Sequence[str] | None) -> list[TensorSpec]:
        """The outputs asked for by name (None: all); raises ProtocolError for unknown names."""
        if names is None:
            return list(self.outputs)
        specs = {spec.name: spec for spec in self.outputs}
        unknown = [name for name in names if name not in specs]
        if unknown:
            raise ProtocolError(f"unknown outputs {unknown}; the model's outputs are {list(specs)}")
        return [specs[name] for name in names]

    def output_arrays(self, answers: Answers, specs: Sequence[TensorSpec]) -> list[tuple[TensorSpec, np.ndarray]]:
        """The asked-for output tensors' data from the task's answers."""
        arrays = self.build_outputs(answers)
        return [(spec, arrays[spec.name]) for spec in specs]


def strings(answers: Answers, key: str) -> np.ndarray:
    """A BYTES tensor of one string field of every answer."""
    return np.array([answer[key] for answer in answers], dtype=object)


def json_strings(answers: Answers, key: str) -> np.ndarray:
    """A BYTES tensor of one field of every answer, as JSON."""
    return np.array([json.dumps(answer[key], ensure_ascii=False) for answer in answers], dtype=object)


def numbers(answers: Answers, key: str, dtype: type) -> np.ndarray:
    """A numeric tensor of one field of every answer."""
    return np.array([answer[key] for answer in answers], dtype=dtype)
