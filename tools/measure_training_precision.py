"""Whether bf16 training pays on this machine: one training step (forward, backward, AdamW) of a sequence classifier
in fp32 and under bf16 autocast, interleaved, on random tokens (what `--precision bf16` runs).

    python tools/measure_training_precision.py all-mpnet-base-v2 all-MiniLM-L6-v2 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoModelForSequenceClassification

from compression.base_models import resolve_base_model

PRECISIONS = ("fp32", "bf16")
FIRST_WORD_ID = 5  # token ids below are special tokens in BERT-style vocabularies


def step_seconds(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
                 precision: str) -> float:
    """Seconds of one training step in that precision."""
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def measure(name: str, batch_size: int, length: int, rounds: int, steps: int) -> dict[str, float]:
    """Median step seconds per precision, the precisions taking turns ``rounds`` times (one warm-up step each)."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_base_model(name), num_labels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    vocabulary = model.config.vocab_size
    batch = {"input_ids": torch.randint(FIRST_WORD_ID, vocabulary, (batch_size, length)),
             "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
             "labels": torch.randint(0, 2, (batch_size,))}
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for _ in range(rounds):
        for precision in PRECISIONS:
            step_seconds(model, optimizer, batch, precision)
            times[precision].extend(step_seconds(model, optimizer, batch, precision) for _ in range(steps))
    return {precision: statistics.median(values) for precision, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names or directories")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=24, help="tokens per text")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each precision")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per turn")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.models:
        medians = measure(name, args.batch_size, args.length, args.rounds, args.steps)
        print(f"{name}: fp32 {medians['fp32']:.3f} s, bf16 {medians['bf16']:.3f} s a step "
              f"(bf16 {medians['fp32'] / medians['bf16']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
