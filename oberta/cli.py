"""The `oberta` command: serve, finetune, compress, export, evaluate, corpus, bench.

Subcommands import their heavy dependencies lazily, so `oberta serve` never needs torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from oberta.run_dirs import RUNS_DIR_VARIABLE, run_dir
from oberta.task_arguments import add_task_argument, add_task_settings_arguments, task_settings
from service.runtime.errors import ObertaError

Handler = Callable[[argparse.Namespace], int]


def _add_precision_argument(parser: argparse.ArgumentParser, default_help: str) -> None:
    """--precision (finetune and compress)."""
    from compression.training_loop import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS,
                        help="training arithmetic: fp32, or bf16 (matrix products in bfloat16 under autocast, weights "
                        "and optimizer in fp32; on a CPU with AMX-BF16 1.9x faster for all-mpnet-base-v2, no faster "
                        "for all-MiniLM-L6-v2; fp32 where the CPU lacks bfloat16 arithmetic, which bf16 would "
                        f"emulate many times slower) ({default_help})")


def _add_data_arguments(parser: argparse.ArgumentParser, max_length_help: str, task_note: str = "") -> None:
    """--task (with the command's note on the tasks), the data flags, --max-length and the task settings flags
    (finetune and compress)."""
    add_task_argument(parser, task_note)
    group = _add_data_files(parser, training=True)
    group.add_argument("--max-length", type=int, help=max_length_help)
    add_task_settings_arguments(parser)


def _add_data_files(parser: argparse.ArgumentParser, training: bool) -> argparse._ArgumentGroup:
    """The flags naming the data and how validation is carved from it (for a command that trains, or that only
    scores); returns their group."""
    from compression.validation import SPLITS

    group = parser.add_argument_group("data")
    group.add_argument("--train-file", required=True,
                       help="training data: .tsv, .csv or .jsonl (text classification), SQuAD .json (question "
                       "answering), CoNLL .txt (token classification) or plain texts, .txt one a line (sentence "
                       "embedding; see `oberta corpus`); optionally .gz or .xz")
    group.add_argument("--validation-file", help="validation data; default: carve --validation-fraction from train "
                       "(sentence embedding: scored sentence pairs, e.g. STS-B's train.tsv; required)")
    group.add_argument("--validation-split", choices=SPLITS,
                       help="how text classification carves validation from train: 'sentences' holds out whole "
                       "sentences (texts inside no other text) and drops every text inside one from training, so no "
                       "validation text is a phrase of a training text (SST-2); 'random' draws examples. Default: "
                       "sentences for single texts, random for pairs. Overlaps are counted and recorded either way")
    group.add_argument("--validation-fraction", type=float, default=0.05,
                       help="share of train held out: of its sentences for the sentences split, of its "
                       "examples otherwise (QA: articles; default 0.05)")
    seeded = "the validation split and training" if training else "the validation split, as in the run that trained"
    group.add_argument("--seed", type=int, default=42, help=f"seed of {seeded} (default 42)")
    group.add_argument("--text-column", help="text column (default: detected, e.g. sentence, text, sentence1)")
    group.add_argument("--text-pair-column", help="second text column for pairs (default: detected, e.g. sentence2)")
    group.add_argument("--label-column", help="label column (default: detected, e.g. label)")
    group.add_argument("--label-names",
                       help="comma-separated display names for the sorted labels, e.g. negative,positive")
    group.add_argument("--round-labels", action="store_true",
                       help="round numeric labels half up to integer classes (STS-B scores 0-5 -> classes 0..5)")
    group.add_argument("--retrieval-file",
                       help="sentence embedding: a SQuAD .json whose held-out articles (--validation-fraction of "
                       "them) score retrieval, questions against paragraphs; their texts leave training")
    group.add_argument("--max-train-examples", type=int, help="use only the first N training examples")
    return group


def _data_config(args: argparse.Namespace, task: str | None = None,
                 settings: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    """The data settings of --task and its settings flags (or of the task and settings given); the sequence length is
    the training loop's (--max-length or the recipe's)."""
    from compression.tasks import DataConfig

    return DataConfig(
        train_file=args.train_file,
        task=task or args.task,
        validation_file=args.validation_file,
        validation_split=args.validation_split,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
        label_names=args.label_names.split(",") if args.label_names else None,
        round_labels=args.round_labels,
        retrieval_file=args.retrieval_file,
        max_train_examples=args.max_train_examples,
        task_settings=task_settings(args) if settings is None else settings,
    )


def _run_finetune(args: argparse.Namespace) -> int:
    from compression.finetune import FinetuneConfig, finetune
    from compression.training_loop import finetune_loop

    loop = finetune_loop(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        freeze_embeddings=False if args.train_embeddings else None,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        precision=args.precision,
        micro_batch_tokens=args.micro_batch_tokens,
    )
    output = run_dir("finetune", args.task, args)
    config = FinetuneConfig(data=_data_config(args), output_dir=output, model=args.model, loop=loop,
                            threads=args.threads)
    info = finetune(config)
    print(f"validation: {info['validation_metrics']}; model in {output}/final")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from service.api.server import serve

    serve(host=args.host, port=args.port, config_path=args.config, models_dir=args.models_dir)
    return 0


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve models over HTTP (FastAPI + uvicorn) on DeepSparse or ONNX Runtime",
        description="Serve every model directory under models/ (or those listed in --config) with dynamic batching, "
        "Prometheus metrics at /metrics, health at /health/live and /health/ready, and OpenAPI docs at /docs. "
        "Needs no torch.",
    )
    parser.add_argument("--host", help="address to bind (default: OBERTA_HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: OBERTA_PORT, else 8000)")
    parser.add_argument("--config", help="YAML file listing the endpoints (default: OBERTA_CONFIG, else discovery)")
    parser.add_argument("--models-dir", help="directory of model directories (default: OBERTA_MODELS_DIR, else models)")
    parser.set_defaults(handler=_run_serve)


def _finetune_parser(sub: argparse._SubParsersAction) -> None:
    from compression.training_loop import finetune_default as default

    parser = sub.add_parser(
        "finetune",
        help="fine-tune a dense encoder (the teacher) for classification, question answering or NER (a sentence "
        "encoder learns from its teacher in `compress`)",
        description="Fine-tune an encoder (BERT or RoBERTa architecture) on a labelled file for --task. "
        "Checkpoints go to OUTPUT/checkpoint-N and a rerun resumes from the newest; "
        "the final model lands in OUTPUT/final.",
    )
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="base model: a local path, the bundled "
                        "all-MiniLM-L6-v2 (default), or a hub name where a hub is reachable")
    parser.add_argument("--output", help=f"run directory (default: a directory of its own for these arguments under "
                        f"{RUNS_DIR_VARIABLE}, else ~/.cache/oberta/runs; printed at the start)")
    parser.add_argument("--epochs", type=float, help=f"training epochs (default {default('epochs'):g})")
    parser.add_argument("--learning-rate", type=float,
                        help=f"peak learning rate (default {default('learning_rate'):g})")
    parser.add_argument("--batch-size", type=int, help=f"batch size (default {default('batch_size')})")
    parser.add_argument("--train-embeddings", action="store_true", help="also train the embeddings (frozen by default)")
    parser.add_argument("--eval-steps", type=int, help=f"evaluate every N steps (default {default('eval_steps')})")
    parser.add_argument("--save-steps", type=int, help=f"checkpoint every N steps (default {default('save_steps')})")
    parser.add_argument("--micro-batch-tokens", type=int,
                        help="run each batch in parts of at most this many tokens (rows times padded length), the "
                        "same update in less memory traffic: e.g. 2048 for 384-token question-answering windows, "
                        "about 2x faster a step on 2 CPU cores (text classification and question answering only; "
                        "default: whole batches)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    _add_precision_argument(parser, f"default {default('precision')}")
    _add_data_arguments(parser, f"maximum sequence length in tokens (default {default('max_length')})",
                        task_note=". Not sentence-embedding: it learns from a teacher, in `oberta compress`")
    parser.set_defaults(handler=_run_finetune)


def _compress_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe settings the command line replaces (flags given only); ``--quantization qat`` also sets the
    DeepSparse file's weights per column, the rounding QAT trains for."""
    given = {"training.max_length": args.max_length, "training.precision": args.precision,
             "quantization.method": args.quantization}
    overrides = {dotted: value for dotted, value in given.items() if value is not None}
    if args.quantization == "qat":
        overrides["quantization.deepsparse.per_channel"] = True
    return overrides


def _run_compress(args: argparse.Namespace) -> int:
    import shlex

    from compression.compress import CompressConfig, compress
    from compression.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    output = run_dir("compress", args.name, args)
    config = CompressConfig(
        recipe=recipe,
        recipe_source=args.recipe,
        model=args.model,
        teacher=args.teacher if args.teacher else (None if args.no_teacher else args.model),
        data=_data_config(args),
        output_dir=output,
        name=args.name,
        model_dir=args.model_dir,
        threads=args.threads,
        command="oberta " + shlex.join(sys.argv[1:]),
        stage=args.stage,
        overrides=_compress_overrides(args),
    )
    card = compress(config)
    if card is None:
        print(f"trained model in {output}/trained; run again with --stage export to quantize and export it")
        return 0
    print(f"sparsity {card.sparsity:.4f}; metrics {card.metrics}; model in {args.model_dir or output + '/model'}")
    return 0


def _compress_parser(sub: argparse._SubParsersAction) -> None:
    from compression.recipe import shipped_recipes

    parser = sub.add_parser(
        "compress",
        help="prune (oBERT) with distillation while fine-tuning, quantize to INT8, export",
        description="Gradually prune a fine-tuned dense model with the Optimal BERT Surgeon on a cubic schedule, "
        "distilling from the dense teacher, then quantize to INT8 and export a served model directory. "
        "Checkpoints go to OUTPUT/checkpoint-N; rerunning the same command resumes from the newest.",
    )
    parser.add_argument("--recipe", required=True,
                        help=f"recipe YAML path or shipped name ({', '.join(shipped_recipes())})")
    parser.add_argument("--model", required=True, help="the dense fine-tuned model directory to prune")
    parser.add_argument("--teacher", help="teacher model directory (default: --model, the dense model itself)")
    parser.add_argument("--no-teacher", action="store_true", help="train on labels alone, without distillation")
    parser.add_argument("--output", help="run directory: checkpoints, trained model, logs (default: a directory of "
                        f"its own for these arguments under {RUNS_DIR_VARIABLE}, else ~/.cache/oberta/runs; printed "
                        "at the start)")
    parser.add_argument("--name", required=True, help="served model name, e.g. sentiment")
    parser.add_argument("--model-dir", help="where the served model directory goes (default OUTPUT/model)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    _add_precision_argument(parser, "default: the recipe's training.precision; given, it overrides the recipe's")
    parser.add_argument("--quantization", choices=("static", "qat", "none"),
                        help="INT8 after pruning: static (calibrated), qat (quantization-aware training for the "
                        "recipe's quantization.qat epochs first, with per-column DeepSparse weights; the card "
                        "compares it with static), or none (FP32). Default: the recipe's quantization.method")
    parser.add_argument("--stage", choices=("all", "train", "export"), default="all",
                        help="all (default); train: prune and distill, save OUTPUT/trained and stop (e.g. on a GPU "
                        "machine); export: INT8, export and evaluate OUTPUT/trained (e.g. on the CPU machine)")
    _add_data_arguments(parser, "maximum sequence length in tokens (default: the recipe's training.max_length); "
                        "given, it overrides the recipe's, and the card records the override")
    parser.set_defaults(handler=_run_compress)


def _run_export(args: argparse.Namespace) -> int:
    import json
    import shlex
    from pathlib import Path

    from transformers import AutoTokenizer

    from compression.base_models import loading_from, resolve_base_model
    from compression.export import export_model_dir
    from compression.finetune import TRAINING_INFO
    from compression.tasks import task_for

    task = task_for(args.task)
    path = resolve_base_model(args.model)
    model = task.load_model(path)
    with loading_from(path):
        tokenizer = AutoTokenizer.from_pretrained(path)
    info_path = Path(path) / TRAINING_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    metrics = info.get("validation_metrics", {})
    build = {"command": "oberta " + shlex.join(sys.argv[1:]), "source": args.model, "training": info}
    card = export_model_dir(model, tokenizer, args.output, args.name, args.max_length, metrics, build,
                            task=args.task, task_settings=task.card_settings(model, task_settings(args)))
    print(f"exported {card.name} ({card.task}, labels {card.labels}) to {args.output}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from compression.served_evaluation import evaluate_model_dir
    from service.runtime.card import load_card

    card = load_card(args.model)
    result = evaluate_model_dir(Path(args.model), _data_config(args, card.task, card.task_settings),
                                engine=args.engine, threads=args.threads)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f"{result.model} ({result.task}): {result.validation_examples} validation examples, {result.validation}")
    for score in result.scores:
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in score.metrics.items())
        fraction = score.engine_info.get("fraction_of_supported_ops")
        supported = "" if fraction is None else f" (fraction_of_supported_ops {fraction:.3f})"
        print(f"{score.file} [{', '.join(score.listed_for)} file] on {score.runtime}{supported}: {metrics}")
    return 0


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="score a served model directory's ONNX files on its task's validation data",
        description="Read the card of --model (task, files per engine, inputs, max_length, task settings), carve and "
        "encode the validation data as `oberta compress` does with the same data flags, and print the task's metrics "
        "of each ONNX file run on ONNX Runtime (the DeepSparse file too, as a graph), or with --engine deepsparse "
        "of the DeepSparse file on DeepSparse itself.",
    )
    parser.add_argument("--model", required=True, help="served model directory, e.g. models/sentiment")
    parser.add_argument("--engine", choices=("onnxruntime", "deepsparse"), default="onnxruntime",
                        help="onnxruntime (default): every file on ONNX Runtime; deepsparse: the DeepSparse file on "
                        "DeepSparse (needs deepsparse and a CPU it supports; every shape is compiled first)")
    parser.add_argument("--threads", type=int, help="engine threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_data_files(parser, training=False)
    parser.set_defaults(handler=_run_evaluate)


def _run_corpus(args: argparse.Namespace) -> int:
    from compression.corpus import CorpusConfig, build_corpus

    counts = build_corpus(CorpusConfig(args.files, args.output, args.max_per_file, args.min_words, args.max_words,
                                       args.seed, args.whole))
    print(f"wrote {sum(counts.values())} texts to {args.output}: " +
          ", ".join(f"{path} {count}" for path, count in counts.items()))
    return 0


def _corpus_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "corpus",
        help="gather plain sentences from labelled data files, for sentence-embedding compression",
        description="Read each file by its format (SQuAD .json: questions and paragraph sentences; CoNLL .txt: "
        "sentences; .tsv/.csv/.jsonl: text and pair columns, long texts cut into sentences), leave out texts inside "
        "other texts of the same file (SST-2's phrases), deduplicate, keep texts of --min-words to --max-words "
        "words, sample up to --max-per-file of each file and write them shuffled, one a line.",
    )
    parser.add_argument("files", nargs="+", help="data files (optionally .gz or .xz)")
    parser.add_argument("--output", required=True, help="text file to write")
    parser.add_argument("--max-per-file", type=int, help="most texts taken from one file (default: all)")
    parser.add_argument("--min-words", type=int, default=4, help="shortest text kept, in words (default 4)")
    parser.add_argument("--max-words", type=int, default=64, help="longest text kept, in words (default 64)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the sampling and order (default 42)")
    parser.add_argument("--whole", action="store_true",
                        help="also keep each long text (SQuAD paragraph, review) whole, besides its sentences (up to "
                        "--max-words); phrases inside other texts are then kept too")
    parser.set_defaults(handler=_run_corpus)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    from compression.training_loop import DEFAULT_MAX_LENGTH

    parser = sub.add_parser(
        "export",
        help="export a trained PyTorch model to a served model directory (ONNX, tokenizer, card)",
        description="Export with the TorchScript exporter at opset 14 (DeepSparse's fast path), with dynamic "
        "batch and sequence axes, check ONNX Runtime's outputs against PyTorch, and write model.yaml.",
    )
    parser.add_argument("--model", required=True, help="trained model directory (e.g. RUN/final), or a base model "
                        "alias (all-MiniLM-L6-v2, all-mpnet-base-v2) for --task sentence-embedding")
    parser.add_argument("--output", required=True, help="model directory to write, e.g. models/sentiment")
    parser.add_argument("--name", required=True, help="served model name")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                        help=f"maximum sequence length served (default {DEFAULT_MAX_LENGTH})")
    add_task_argument(parser)
    add_task_settings_arguments(parser)
    parser.set_defaults(handler=_run_export)


def _run_bench_engines(args: argparse.Namespace) -> int:
    import shlex
    import tempfile
    from pathlib import Path

    from benchmarks.engines import run_benchmark
    from benchmarks.report import as_the_sparse_model, machine, record_speed, table, with_ratios, write_reports
    from service.runtime.card import load_card

    def engine_files(directory: str) -> dict[str, Path]:
        return {str(engine): Path(directory) / name for engine, name in load_card(directory).files.items()}

    sparse_files = engine_files(args.model) if args.model else None
    candidates = {name: engine_files(directory) for name, directory in args.candidates}
    if len(candidates) < len(args.candidates):
        raise SystemExit("oberta bench engines: two --candidates share a name; name them NAME=DIR")
    with tempfile.TemporaryDirectory(prefix="oberta-bench-") as workdir:
        measured, skipped = run_benchmark(
            args.shapes.split(","), sparse_files, args.sparsity, [int(b) for b in args.batch_sizes.split(",")],
            args.sequence_length, args.rounds, args.seconds_per_turn, args.threads, Path(workdir), candidates,
        )
    results = with_ratios(measured)
    meta = {
        "title": "engines",
        "command": "oberta " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "sequence_length": args.sequence_length,
        "rounds": args.rounds,
        "sparse_model": args.model,
        "candidates": dict(args.candidates),
        "skipped": skipped,
    }
    print("\n".join(table(results, skipped)))
    for path in write_reports(results, meta, Path(args.output), args.stem):
        print(f"wrote {path}")
    if args.record_in_card:
        if args.model:
            record_speed(Path(args.model), results, meta)
            print(f"recorded the sparse model's speed in {args.model}/model.yaml")
        for name, directory in args.candidates:
            record_speed(Path(directory), as_the_sparse_model(results, name), meta)
            print(f"recorded {name}'s speed in {directory}/model.yaml")
    return 0


def _named_model_directory(value: str) -> tuple[str, str]:
    """NAME=DIR or DIR (named by the directory): a model directory with a card."""
    from pathlib import Path

    name, separator, directory = value.rpartition("=")
    if not separator:
        name = Path(directory).resolve().name
    if not name:
        raise argparse.ArgumentTypeError(f"{value}: the NAME before = is empty")
    if not (Path(directory) / "model.yaml").is_file():
        raise argparse.ArgumentTypeError(f"{directory} is not a model directory (no model.yaml)")
    return name, directory


def _candidate(value: str) -> tuple[str, str]:
    """A --candidates entry (NAME=DIR or DIR) whose name is not one of the benchmark's own models."""
    from benchmarks.engines import CASES

    name, directory = _named_model_directory(value)
    if name in {model for model, _ in CASES}:
        raise argparse.ArgumentTypeError(f"{value}: name the candidate (NAME=DIR) with a name that is not one of "
                                         f"the benchmark's own models ({', '.join(sorted({m for m, _ in CASES}))})")
    return name, directory


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (engines, http, chart)",
                            description="Measure speed; results go to benchmarks/results/ as JSON, markdown and PNG.")
    kinds = parser.add_subparsers(dest="bench", required=True)
    engines = kinds.add_parser(
        "engines",
        help="items/s and latency: dense FP32 (PyTorch, ONNX Runtime), the dense INT8 peers (ONNX Runtime optimized, "
        "OpenVINO), sparse INT8 (DeepSparse, ORT)",
        description="Interleaved engine benchmark at each batch size for the MiniLM shape (the shipped sparse "
        "model against random dense models of its shape) and the bert-base shape (random weights, magnitude-"
        "pruned to --sparsity and quantized like the shipped models). Every case is also reported as a ratio to "
        "dense FP32 on ONNX Runtime and to the fastest dense INT8 peer at its batch size; the OpenVINO peer needs "
        "the extra oberta[peers] and is skipped without it.",
    )
    engines.add_argument("--model", default="models/sentiment",
                         help="shipped sparse INT8 model directory for the MiniLM shape (default models/sentiment)")
    engines.add_argument("--candidates", nargs="+", default=[], type=_candidate, metavar="[NAME=]DIR",
                         help="other sparse INT8 model directories measured in the same run beside --model, on the "
                         "MiniLM shape (each engine's file of the card), named NAME or by their directory")
    engines.add_argument("--shapes", default="minilm,bert-base", help="comma-separated shapes (minilm,bert-base)")
    engines.add_argument("--sparsity", type=float, default=0.9, help="sparsity of random sparse models (0.9)")
    engines.add_argument("--batch-sizes", default="1,16", help="comma-separated batch sizes (default 1,16)")
    engines.add_argument("--sequence-length", type=int, default=128, help="tokens per item (default 128)")
    engines.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    engines.add_argument("--seconds-per-turn", type=float, default=2.0, help="seconds per case per round (2)")
    engines.add_argument("--threads", type=int, help="threads per engine (default: all cores)")
    engines.add_argument("--output", default="benchmarks/results", help="results directory")
    engines.add_argument("--stem", default="engines", help="file name stem of the results (default engines)")
    engines.add_argument("--record-in-card", action="store_true",
                         help="write the measured speed of the --model and of each candidate, with the dense "
                         "references and peers of this run, into its model.yaml (for `oberta bench chart`)")
    engines.set_defaults(handler=_run_bench_engines)
    _bench_http_parser(kinds)
    _bench_chart_parser(kinds)


def _run_bench_chart(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from benchmarks.accuracy_speed import draw
    from service.runtime.card import load_card

    cards = {name: load_card(directory) for name, directory in args.models}
    if len(cards) < len(args.models):
        raise SystemExit("oberta bench chart: two --models share a name; name them NAME=DIR")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{args.stem}.png"
    points = draw(cards, path, "oberta " + shlex.join(sys.argv[1:]))
    for point in points:
        ratio = "" if point.vs_best_dense_int8 is None else f" {point.vs_best_dense_int8:.2f}x"
        scored = "" if point.measured else " (teacher's score)"
        print(f"{point.model:<20} {point.case:<26} {point.items_per_second:8.1f} items/s{ratio:>8}  "
              f"{point.score:.4f}{scored}")
    missing = sorted(set(cards) - {point.model for point in points})
    for name in missing:
        print(f"{name}: no INT8 scores with a recorded speed (run oberta bench engines --record-in-card)")
    print(f"wrote {path}")
    return 0


def _bench_chart_parser(kinds: argparse._SubParsersAction) -> None:
    chart = kinds.add_parser(
        "chart", help="accuracy against speed of model directories, from their cards",
        description="Draw each model's INT8 files (DeepSparse and ONNX Runtime) as the task's score on the card's "
        "validation against items/s at batch 16, with the dense references of the same benchmark run (dense FP32 "
        "ONNX Runtime and the dense INT8 peers, drawn at the dense teacher's score). Speeds come from `oberta bench "
        "engines --model DIR --record-in-card`.",
    )
    chart.add_argument("--models", nargs="+", required=True, type=_named_model_directory, metavar="[NAME=]DIR",
                       help="model directories (their model.yaml cards), each drawn as NAME or by its directory")
    chart.add_argument("--output", default="benchmarks/results", help="results directory")
    chart.add_argument("--stem", default="accuracy-speed", help="file name stem of the chart (default "
                       "accuracy-speed)")
    chart.set_defaults(handler=_run_bench_chart)


def _run_bench_http(args: argparse.Namespace) -> int:
    from benchmarks.http_command import run_command

    return run_command(args)


def _bench_http_parser(kinds: argparse._SubParsersAction) -> None:
    http = kinds.add_parser(
        "http",
        help="throughput and latency over HTTP at rising concurrency, against the engine alone",
        description="Start `oberta serve` for --model on a free 127.0.0.1 port (or use a running loopback server, "
        "--url), sweep the concurrency levels with a bounded closed-loop load generator, measuring the engine alone "
        "in-process on the same texts before each round of each level, and stop the server with SIGTERM. With "
        "--mixed, serve several models together and measure their shares of the machine under mixed load.",
    )
    http.add_argument("--model", default="models/sentiment", help="model directory (default models/sentiment)")
    http.add_argument("--url", help="a running server on loopback (default: start one for --model)")
    http.add_argument("--name", help="served model name (default: the card's)")
    http.add_argument("--engine", default="auto", choices=["auto", "deepsparse", "onnxruntime"],
                      help="engine of the started server (default auto)")
    http.add_argument("--threads", type=int, help="engine threads, server and engine alone (default: all cores)")
    http.add_argument("--max-batch-size", type=int, default=16, help="started server's max_batch_size (16)")
    http.add_argument("--max-wait-ms", type=float, default=5.0, help="started server's max_wait_ms (5)")
    http.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts (1,4,16,64)")
    http.add_argument("--requests-per-level", type=int, default=2000, help="most requests per level (2000)")
    http.add_argument("--seconds-per-level", type=float, default=20.0, help="most seconds per level (20)")
    http.add_argument("--inputs-per-request", type=int, default=1, help="texts per request (1)")
    http.add_argument("--protocol", default="v1", choices=["v1", "v2"], help="API to call (v1)")
    http.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (30)")
    http.add_argument("--engine-seconds", type=float, default=10.0,
                      help="seconds measuring the engine alone, a round (10)")
    http.add_argument("--texts", help="file of texts, one per line (default: built-in review-like texts, see "
                      "--text-length)")
    http.add_argument("--text-length", choices=["short", "long"], default="short",
                      help="built-in texts without --texts: short sentences (about 8-35 tokens) or long paragraphs "
                      "(67-182 tokens, median 114; e.g. with --inputs-per-request 16 --concurrency 4) (short)")
    http.add_argument("--output", default="benchmarks/results", help="results directory")
    http.add_argument("--mixed", metavar="DIR:CLIENTS[:INPUTS],...",
                      help="serve these models together and measure each alone, then all at once with the same "
                      "clients: each model's share (mixed req/s over alone) and their sum; --model, --concurrency, "
                      "--inputs-per-request and --requests-per-level do not apply (phases last --seconds-per-level)")
    http.add_argument("--rounds", type=int, default=1,
                      help="rounds per concurrency level of the engine alone (--engine-seconds) then the level "
                      "(--seconds-per-level), each served rate compared with the engine measured beside it; with "
                      "--mixed: rounds of each model alone then all at once (1)")
    http.add_argument("--stem", help="file name stem of the results (default http, or http-mixed with --mixed)")
    http.set_defaults(handler=_run_bench_http)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="oberta",
        description="Compress BERT-family encoders (oBERT pruning, distillation, INT8) and serve them on CPUs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _finetune_parser(sub)
    _compress_parser(sub)
    _export_parser(sub)
    _evaluate_parser(sub)
    _corpus_parser(sub)
    _bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `oberta` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ObertaError, ValueError, FileNotFoundError) as exc:  # a user's mistake, or a stop: one line, no traceback
        status = exc.exit_status if isinstance(exc, ObertaError) else 2
        print(f"oberta {args.command}: {'error: ' if status == 2 else ''}{exc}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
