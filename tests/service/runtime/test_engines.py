"""Engine registry and `auto` choice; ONNX Runtime and DeepSparse agree on tiny models; shape buckets."""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from service.runtime.card import load_card
from service.runtime.engines import ENGINES, Engine, EngineOptions, choose_engine, load_engine, require_engine_package
from service.runtime.engines import registry as engine_registry
from service.runtime.engines.buckets import checked_buckets, default_sequence_buckets, fitting_bucket, pad_2d
from service.runtime.engines.deepsparse_engine import (
    DeepSparseEngine,
    compile_order,
    deepsparse_support,
    import_deepsparse,
)
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from service.runtime.errors import ConfigError, MissingPackage
from service.runtime.tasks import build_task
from service.runtime.tasks.encoding import load_tokenizer

DEEPSPARSE_USABLE, DEEPSPARSE_REASON = deepsparse_support()
needs_deepsparse = pytest.mark.skipif(not DEEPSPARSE_USABLE, reason=DEEPSPARSE_REASON)
TEXTS: list[object] = [
    "a gorgeous witty movie",
    ["dull film", "no point at all"],
    "good " * 70,
    "bad",
    "awful plot",
    "love it",
]


def test_registry_lists_both_engines() -> None:
    assert set(ENGINES) == {"onnxruntime", "deepsparse"}


def test_explicit_choice_needs_a_file_for_that_engine(bert_dir: Path) -> None:
    card = load_card(bert_dir)
    assert choose_engine("onnxruntime", card) == ("onnxruntime", "configured")
    only_ort = card.model_copy(update={"files": {"onnxruntime": "model.onnx"}})
    with pytest.raises(ConfigError, match="no ONNX file for engine deepsparse"):
        choose_engine("deepsparse", only_ort)
    assert choose_engine("auto", only_ort) == ("onnxruntime", "the model card lists no deepsparse file")


def test_auto_prefers_deepsparse_only_when_usable(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = load_card(bert_dir)
    monkeypatch.setattr(engine_registry, "_deepsparse_support", lambda: (True, "fine"))
    assert choose_engine("auto", card) == ("deepsparse", "fine")
    monkeypatch.setattr(engine_registry, "_deepsparse_support", lambda: (False, "deepsparse is unavailable (x)"))
    assert choose_engine("auto", card) == ("onnxruntime", "deepsparse is unavailable (x)")
    only_deepsparse = card.model_copy(update={"files": {"deepsparse": "model.onnx"}})
    with pytest.raises(ConfigError, match="only a deepsparse file"):
        choose_engine("auto", only_deepsparse)


def test_auto_falls_back_to_onnxruntime_when_deepsparse_fails(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(path: Path, options: EngineOptions) -> Engine:
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(engine_registry, "_deepsparse_support", lambda: (True, "fine"))
    monkeypatch.setitem(ENGINES, "deepsparse", broken)
    card, options = load_card(bert_dir), EngineOptions(max_length=64, threads=1)
    with caplog.at_level(logging.WARNING):
        engine = load_engine("auto", bert_dir, card, options)
    assert engine.name == "onnxruntime"
    assert engine.info()["selection"] == {"configured": "auto",
                                          "reason": "deepsparse failed to load (RuntimeError: cannot compile)"}
    assert "falling back to onnxruntime" in caplog.text
    with pytest.raises(RuntimeError, match="cannot compile"):
        load_engine("deepsparse", bert_dir, card, options)


def test_a_configured_engine_whose_package_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepsparse", None)  # as if not installed: import and find_spec both fail
    with pytest.raises(MissingPackage, match=r"pip install 'oberta\[deepsparse\]'"):
        require_engine_package("deepsparse")
    with pytest.raises(MissingPackage, match=r"pip install 'oberta\[deepsparse\]'"):
        import_deepsparse()
    require_engine_package("onnxruntime")
    require_engine_package("auto")
    assert not deepsparse_support()[0]


def test_buckets() -> None:
    assert default_sequence_buckets(64) == (32, 64)
    assert default_sequence_buckets(100) == (32, 64, 100)
    assert default_sequence_buckets(512) == (32, 64, 128, 256, 512)
    assert default_sequence_buckets(16) == (16,)
    assert checked_buckets([16, 1, 16], 64, "batch") == (1, 16)
    with pytest.raises(ConfigError, match="at most 64"):
        checked_buckets([128], 64, "sequence")
    with pytest.raises(ValueError, match="non-empty"):
        checked_buckets([], None, "batch")
    assert [fitting_bucket((1, 16), size) for size in (1, 2, 16)] == [1, 16, 16]
    with pytest.raises(ValueError, match="exceeds"):
        fitting_bucket((1, 16), 17)
    padded = pad_2d(np.ones((2, 3), dtype=np.int64), 4, 5)
    assert padded.shape == (4, 5) and padded.sum() == 6 and padded.flags.c_contiguous


def _batch(model_dir: Path, engine: Engine, texts: Sequence[object]) -> dict[str, np.ndarray]:
    card = load_card(model_dir)
    tokenizer, pad_id = load_tokenizer(model_dir / card.tokenizer, card.max_length, "truncate")
    task = build_task(card, tokenizer, pad_id, engine.input_names)
    return task.collate(task.preprocess(texts))


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_onnxruntime_is_padding_invariant(arch: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(f"{arch}_dir")
    engine = load_engine("onnxruntime", model_dir, load_card(model_dir), EngineOptions(max_length=64, threads=1))
    batched = engine.run(_batch(model_dir, engine, TEXTS))[0]
    singles = np.concatenate([engine.run(_batch(model_dir, engine, [text]))[0] for text in TEXTS])
    assert batched.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_served_onnxruntime_threads_sleep_between_batches(bert_dir: Path) -> None:
    card, options = load_card(bert_dir), EngineOptions(max_length=64, threads=1)
    assert load_engine("onnxruntime", bert_dir, card, options).info()["spinning"] is False
    served = ENGINES["onnxruntime"](bert_dir / card.files["onnxruntime"], options)
    assert isinstance(served, OnnxRuntimeEngine)
    benchmarked = OnnxRuntimeEngine(bert_dir / card.files["onnxruntime"], threads=1, spinning=True)
    assert served._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ONNX Runtime's default: spinning
        benchmarked._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


@needs_deepsparse
@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_deepsparse_matches_onnxruntime_over_buckets(arch: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(f"{arch}_dir")
    card = load_card(model_dir)
    onnx_file = model_dir / card.files["deepsparse"]
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    options = EngineOptions(max_length=64, max_batch_size=4, threads=1)
    deepsparse = load_engine("deepsparse", model_dir, card, options)
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == digest, "the source ONNX file must stay untouched"
    info = deepsparse.info()
    assert 0 < info["fraction_of_supported_ops"] <= 1
    assert (info["batch_buckets"], info["sequence_buckets"]) == ([1, 4], [32, 64])
    onnxruntime = load_engine("onnxruntime", model_dir, card, options)
    for texts in (TEXTS[:1], TEXTS[:3], TEXTS[3:], TEXTS):  # batch 1, 3, 3 and 6 (> largest bucket); short and long
        batch = _batch(model_dir, onnxruntime, texts)
        expected = onnxruntime.run(batch)[0]
        got = deepsparse.run(batch)[0]
        assert got.shape == expected.shape
        assert (got.argmax(-1) == expected.argmax(-1)).all()
        np.testing.assert_allclose(got, expected, atol=1e-4)


@needs_deepsparse
def test_deepsparse_serves_a_pooled_sentence_embedding_output(embedding_dir: Path) -> None:
    card = load_card(embedding_dir)
    options = EngineOptions(max_length=card.max_length, max_batch_size=4, threads=1)
    deepsparse = load_engine("deepsparse", embedding_dir, card, options)
    onnxruntime = load_engine("onnxruntime", embedding_dir, card, options)
    texts: list[object] = ["paris", "the king of france lived in versailles " * 5, "john", "new york", "london"]
    for batch_texts in (texts[:1], texts):  # one call of the covering shape; 5 rows over the buckets
        batch = _batch(embedding_dir, onnxruntime, batch_texts)
        expected, got = onnxruntime.run(batch)[0], deepsparse.run(batch)[0]
        assert got.shape == expected.shape == (len(batch_texts), 32)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_compile_order_starts_with_a_shape_that_runs_everything() -> None:
    assert compile_order((1, 16), (32, 64, 128)) == [
        (1, 128), (16, 128), (1, 32), (16, 32), (1, 64), (16, 64)
    ]
    assert compile_order((8,), (64,)) == [(8, 64)]


@needs_deepsparse
def test_deepsparse_serves_on_its_first_shape_and_compiles_the_rest_on_request(bert_dir: Path) -> None:
    card = load_card(bert_dir)
    options = EngineOptions(max_length=64, max_batch_size=4, threads=1)
    deepsparse = DeepSparseEngine(bert_dir / card.files["deepsparse"], options)
    onnxruntime = load_engine("onnxruntime", bert_dir, card, options)
    batch = _batch(bert_dir, onnxruntime, TEXTS)  # 6 texts: more than the largest batch bucket
    expected = onnxruntime.run(batch)[0]
    assert (deepsparse.info()["compiled_shapes"], deepsparse.info()["shapes_pending"]) == ([[1, 64]], 3)
    np.testing.assert_allclose(deepsparse.run(batch)[0], expected, atol=1e-4)
    pending = [deepsparse.compile_next() for _ in range(3)]
    assert pending == [True, True, False]
    assert deepsparse.info()["compiled_shapes"] == [[1, 32], [1, 64], [4, 32], [4, 64]]
    assert deepsparse.info()["shapes_pending"] == 0
    assert deepsparse.compile_next() is False
    np.testing.assert_allclose(deepsparse.run(batch)[0], expected, atol=1e-4)
