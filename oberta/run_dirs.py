"""Default run directories for `oberta finetune` and `oberta compress`: outside the work tree, one per command.

A run directory holds a run's checkpoints, so that rerunning the same command resumes it. Without `--output`, the
directory is `$OBERTA_RUNS_DIR/<command>-<what>-<digest>` (default root `~/.cache/oberta/runs`), where the digest
covers every argument that shapes the result: the same command lands in the same directory and resumes, another
setting (a learning rate, a recipe, a data file) starts a run of its own instead of resuming one it does not match.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

RUNS_DIR_VARIABLE = "OBERTA_RUNS_DIR"
# Where, how fast and which stage, not what is trained: `compress --stage train` and then `--stage export` share a run.
NOT_SHAPING = frozenset({"output", "model_dir", "threads", "stage", "handler", "command", "micro_batch_tokens"})


def runs_root() -> Path:
    """Where default run directories go: OBERTA_RUNS_DIR, else ~/.cache/oberta/runs."""
    configured = os.environ.get(RUNS_DIR_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "oberta" / "runs"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def default_run_dir(command: str, what: str, args: argparse.Namespace) -> Path:
    """The run directory of `command` (finetune, compress) for `what` (a task, a model name) and these arguments."""
    shaping = {key: value for key, value in sorted(vars(args).items()) if key not in NOT_SHAPING}
    digest = hashlib.sha256(json.dumps(shaping, default=str, sort_keys=True).encode()).hexdigest()[:10]
    return runs_root() / f"{command}-{_slug(what)}-{digest}"


def run_dir(command: str, what: str, args: argparse.Namespace) -> str:
    """`--output` where given, else the default run directory, announced so that a rerun can find it."""
    if args.output:
        return str(args.output)
    path = default_run_dir(command, what, args)
    print(f"run directory: {path} (rerunning the same command resumes from its newest checkpoint)", flush=True)
    return str(path)
