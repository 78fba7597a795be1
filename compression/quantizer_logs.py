"""ONNX Runtime's quantizer logs on the root logger; these turn its chatter into debug records."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


class _DemoteQuantizerLogs(logging.Filter):
    """Turns ONNX Runtime's quantizer chatter ("Please consider pre-processing", one "Ignore MatMul" line per
    attention product), which it logs on the root logger, into debug records: dropped unless debug logging is on."""

    QUANTIZER = f"{os.sep}onnxruntime{os.sep}quantization{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        if self.QUANTIZER not in record.pathname or record.levelno >= logging.ERROR:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Within the block, ONNX Runtime's quantizer logs below ERROR only at debug level."""
    demote = _DemoteQuantizerLogs()
    root = logging.getLogger()
    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)
