"""What the server's tokenizing of token-id tasks (text classification, sentence embedding) saves: a served model's
`TextEncoder.encode_ids` (plain ASCII texts cut into cached word pieces up to the kept tokens, others cut to the words
that can reach them) against the tokenizer reading every text whole (the ASCII twin where every text of a call is
plain ASCII), in calls of a request's size, interleaved; checks that both give the same tokens (which also fills the
word cache first).

    python tools/measure_tokenizing.py models/sentiment ../shared/data/imdb/train.csv.gz --batch 16
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compression.data import load_texts
from service.runtime.card import load_card
from service.runtime.tasks.encoding import Encoded, TextEncoder, ascii_twin, load_tokenizer, tokenizer_for


def milliseconds_per_batch(encode: Callable[[list[str]], Sequence[Encoded]], batches: Sequence[list[str]]) -> float:
    """Mean milliseconds of one call over the batches."""
    started = time.perf_counter()
    for batch in batches:
        encode(batch)
    return (time.perf_counter() - started) / len(batches) * 1000


def measure(model_dir: Path, texts: list[str], batch: int, batches: int, rounds: int) -> dict[str, list[float]]:
    """Milliseconds a call of both ways, round by round, on `batches` calls of `batch` texts drawn (seeded) from
    `texts`; raises SystemExit if the two ways give other tokens."""
    card = load_card(model_dir)
    tokenizer, _ = load_tokenizer(model_dir / card.tokenizer, card.max_length, "truncate")
    encoder, twin = TextEncoder(tokenizer, card.max_length, word_cache=True), ascii_twin(tokenizer)
    drawn = random.Random(0).sample(texts, min(len(texts), batch * batches))
    calls = [drawn[i * batch : (i + 1) * batch] for i in range(len(drawn) // batch)]
    ways: dict[str, Callable[[list[str]], Sequence[Encoded]]] = {
        "served": encoder.encode_ids,
        "whole": lambda texts: tokenizer_for(texts, tokenizer, twin).encode_batch_fast(texts),
    }
    for call in calls:
        if [e.ids for e in ways["served"](call)] != [e.ids for e in ways["whole"](call)]:
            raise SystemExit("the served tokenizing gave other tokens than the whole texts")
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, encode in ways.items():
            times[name].append(milliseconds_per_batch(encode, calls))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="served model directory (its card's tokenizer and max_length)")
    parser.add_argument("texts", help="a text file or table (read as `oberta compress` reads training texts)")
    parser.add_argument("--batch", type=int, default=16, help="texts a call (a request's inputs)")
    parser.add_argument("--batches", type=int, default=100, help="calls a round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both ways")
    args = parser.parse_args()
    texts = load_texts(args.texts)
    times = measure(args.model, texts, args.batch, args.batches, args.rounds)
    max_length = load_card(args.model).max_length
    characters = statistics.median(len(text) for text in texts)
    print(f"{args.model} (max_length {max_length}), {args.batch} texts a call, {args.batches} calls a round; the "
          f"file's texts: median {characters:.0f} characters")
    for name, values in times.items():
        print(f"{name:>7}: {' / '.join(f'{value:.2f}' for value in values)} ms a call")


if __name__ == "__main__":
    main()
