"""One error taxonomy for oberta: each error carries the HTTP status it maps to.

The runtime, the compression half and the CLI raise these; the HTTP layer maps them once per protocol
(`service/api/errors.py`) and the CLI prints one line and exits with the error's `exit_status` (2, but 128 + the
signal's number for a training run stopped by a signal). Errors that are also a user's mistake subclass the built-in
exception callers would expect (ValueError, FileNotFoundError), so `except ValueError` still catches them.
"""

from __future__ import annotations

from collections.abc import Mapping


class ObertaError(Exception):
    """The base: a message meant for people and the HTTP status it maps to."""

    status: int = 500
    exit_status: int = 2  # the CLI's exit status when a command ends on this error

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class ModelNotServed(ObertaError):
    """No model of that name is served."""

    status = 404


class ModelNotReady(ObertaError):
    """The model is loading, failed to load or has stopped."""

    status = 503


class ShuttingDown(ModelNotReady):
    """The server is draining after SIGTERM; clients should go elsewhere."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "the server is shutting down", headers={"Retry-After": str(retry_after_s), "Connection": "close"}
        )


class Overloaded(ObertaError):
    """The model's queue is full; retry later (503, or 429 when the server is set so)."""

    def __init__(self, message: str, *, status: int = 503, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.status = status


class BadInput(ObertaError, ValueError):
    """A request input the model cannot serve; the message says which input and why (v1: 422, v2: 400)."""

    status = 422


class ProtocolError(BadInput):
    """A request that does not follow the protocol or the model's tensors."""

    status = 400


class TooManyInputs(ObertaError):
    """A request body or input count over the server's limits."""

    status = 413


class EngineFailed(ObertaError, RuntimeError):
    """The engine failed on the batch holding the request (or the batcher stopped)."""

    status = 500


class InferenceTimeout(ObertaError, TimeoutError):
    """No answer within the request timeout."""

    status = 504


class ConfigError(ObertaError, ValueError):
    """A user's mistake in settings, arguments, a recipe, a model card or a data file."""


class MissingFile(ConfigError, FileNotFoundError):
    """A file or directory the user named (or a card names) does not exist."""


class MissingPackage(ObertaError, ImportError):
    """An optional package the command needs is not installed; the message says which extra to install."""


class ExportCheckFailed(ObertaError, RuntimeError):
    """An exported model failed a check: outputs differ from PyTorch, or names and shapes are not the task's."""
