"""Sentence-embedding compression: the pooling model, the label-free data and validation, the metrics, `oberta
corpus`, and a compression run end to end on a tiny encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from compression.compress import CompressConfig, compress
from compression.corpus import outermost, sentences
from compression.data import load_texts
from compression.embedding_model import SentenceEmbeddingOutput, load_embedding_model, model_settings, pool
from compression.recipe import Recipe
from compression.stages.config import Plan
from compression.stages.trainer import embedding_targets
from compression.structure import keep_layers
from compression.tasks import DataConfig, task_for
from compression.tasks.sentence_embedding import Query, ScoredPair, embedding_metrics, retrieval, without_overlaps
from compression.training import (
    EmbeddingTargets,
    embedding_distillation_loss,
    layer_states_loss,
    similarity_loss,
)
from oberta.cli import main
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from service.runtime.errors import ConfigError
from service.runtime.tasks import PredictOptions, build_task
from service.runtime.tasks.encoding import load_tokenizer
from tests.tiny_models import EMBEDDING_DIMENSION, make_tiny_encoder_base, tiny_subword_tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"
STSB = str(FIXTURES / "stsb.tsv")
SQUAD = str(FIXTURES / "squad_tiny.json")
TEXTS = (
    "a gorgeous witty movie", "it is a dull and lifeless film", "the acting was great", "the plot was boring",
    "john visited london", "the story of paris", "no fun at all", "a very good film with great acting",
    "it was not very fun", "the movie was bad", "love the plot", "hate the acting",
)


@pytest.fixture(scope="module")
def encoder_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder saved as a sentence-transformers model that mean-pools and normalises."""
    return make_tiny_encoder_base(tmp_path_factory.mktemp("encoder"))


def test_pooling_leaves_padding_out() -> None:
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(states, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(states, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(states, mask, "cls").tolist() == [[1.0, 2.0]]


def test_the_model_pools_as_its_sentence_transformers_files_say(encoder_base: Path) -> None:
    model = load_embedding_model(str(encoder_base))
    settings = {"pooling": "mean", "normalize": True, "dimension": EMBEDDING_DIMENSION}
    assert model_settings(model).model_dump() == settings
    texts = ["the king lived in paris", "who built the palace of versailles"]
    batch = tiny_subword_tokenizer()(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**batch)
        states = BertModel.from_pretrained(encoder_base)(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(output.sentence_embedding, expected, atol=1e-5, rtol=1e-4)
    assert torch.allclose(output.sentence_embedding.norm(dim=-1), torch.ones(2))


def test_a_saved_model_keeps_its_pooling(encoder_base: Path, tmp_path: Path) -> None:
    model = load_embedding_model(str(encoder_base))
    model.config.sentence_pooling, model.config.sentence_normalize = "cls", False
    model.save_pretrained(tmp_path)
    assert model_settings(load_embedding_model(str(tmp_path))).model_dump() == {
        "pooling": "cls", "normalize": False, "dimension": EMBEDDING_DIMENSION}


def test_plain_texts_load_from_text_and_table_files(tmp_path: Path) -> None:
    (tmp_path / "texts.txt").write_text("first text\n\n  second text  \n")
    assert load_texts(tmp_path / "texts.txt") == ["first text", "second text"]
    assert load_texts(STSB)[:2] == ["a gorgeous movie", "a gorgeous film"]  # both sides of each pair
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ConfigError, match="no texts"):
        load_texts(tmp_path / "empty.txt")


def test_corpus_sentences_and_outermost_texts() -> None:
    assert sentences("It was fun.<br /><br />Then it was not! 2 stars? yes.") == [
        "It was fun.", "Then it was not!", "2 stars? yes."]
    assert outermost(["a gorgeous witty movie", "gorgeous witty", "witty", "a dull film"]) == [
        "a gorgeous witty movie", "a dull film"]


def test_oberta_corpus_writes_deduplicated_sentences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "corpus.txt"
    files = [str(FIXTURES / "phrases.tsv"), SQUAD, str(FIXTURES / "conll_tiny.txt")]
    assert main(["corpus", *files, "--output", str(output), "--min-words", "2"]) == 0
    texts = output.read_text().splitlines()
    assert len(texts) == len(set(texts)) > 5
    assert "a gorgeous witty movie" in texts and "gorgeous witty" not in texts  # a phrase of a sentence
    assert any(text.endswith("?") for text in texts)  # SQuAD questions
    assert f"wrote {len(texts)} texts" in capsys.readouterr().out
    paragraph = "Google is in New York. John lived in London and works at Google."
    assert paragraph not in texts
    assert main(["corpus", *files, "--output", str(output), "--min-words", "2", "--whole"]) == 0
    with_whole = output.read_text().splitlines()
    assert paragraph in with_whole and set(texts) < set(with_whole) and "gorgeous witty" not in with_whole


def test_training_texts_overlapping_validation_are_dropped() -> None:
    validation = [ScoredPair("a gorgeous movie", "a gorgeous film", 5.0), Query("who lived in paris?", "the king")]
    train = ["gorgeous movie", "what a gorgeous film it was", "the king of france", "a dull film", "king of france"]
    assert without_overlaps(train, validation) == ["a dull film", "king of france"]


def test_retrieval_ranks_each_question_among_the_paragraphs() -> None:
    queries = [Query("q1", "p1"), Query("q2", "p2"), Query("q3", "p1")]
    vectors = {"p1": np.array([1.0, 0.0]), "p2": np.array([0.0, 1.0]), "q1": np.array([0.9, 0.1]),
               "q2": np.array([0.8, 0.2]), "q3": np.array([1.0, 0.1])}  # q2 is nearer p1 than its own p2
    assert retrieval(queries, vectors) == {"retrieval_recall_at_1": 2 / 3, "retrieval_recall_at_10": 1.0,
                                           "retrieval_mrr": (1 + 0.5 + 1) / 3}


def test_sts_spearman_follows_the_gold_order() -> None:
    pairs = [ScoredPair("a", "b", 5.0), ScoredPair("a", "c", 1.0), ScoredPair("b", "c", 3.0)]
    texts = ["a", "b", "c"]
    rows = [[np.array([1.0, 0.0])], [np.array([1.0, 0.1])], [np.array([0.0, 1.0])]]  # cos(a,b) > cos(b,c) > cos(a,c)
    assert embedding_metrics(pairs, texts, rows) == {"sts_spearman": pytest.approx(1.0)}


def test_prepare_records_both_validations_and_no_overlaps(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([*TEXTS, "a gorgeous movie", "a dull film"]) + "\n")
    config = DataConfig(train_file=str(corpus), task="sentence-embedding", validation_file=STSB,
                        retrieval_file=SQUAD, validation_fraction=0.34)
    data = task_for("sentence-embedding").prepare(config)
    assert "a gorgeous movie" not in data.train and "a gorgeous witty movie" in data.train
    record = data.record.model_dump(exclude_none=True)
    assert record["method"] == "file" and record["retrieval"]["method"] == "articles"
    assert record["retrieval"]["articles"] == 1
    assert (record["validation_in_train"], record["train_in_validation"]) == (0, 0)
    with pytest.raises(ConfigError, match="--validation-file"):
        task_for("sentence-embedding").prepare(DataConfig(train_file=str(corpus), task="sentence-embedding"))


def test_finetune_refuses_a_task_that_learns_from_a_teacher(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS))
    assert main(["finetune", "--task", "sentence-embedding", "--train-file", str(corpus), "--validation-file", STSB,
                 "--output", str(tmp_path / "run")]) == 2


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_compress_distils_prunes_quantizes_and_serves(arch: str, tmp_path: Path) -> None:
    encoder_base = make_tiny_encoder_base(tmp_path / "base", arch=arch)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 2) + "\n")
    recipe = Recipe.model_validate({
        "training": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 100, "eval_steps": 100,
                     "max_length": 32},
        "pruning": {"initial_sparsity": 0.5, "final_sparsity": 0.8, "end_epoch": 1.0, "update_interval_epochs": 0.5,
                    "obs": {"block_size": 8, "num_grads": 4, "grad_batch_size": 4}},
        "quantization": {"calibration_samples": 8},
        "distillation": {"token_states_weight": 1.0, "layer_states_weight": 1.0, "similarity_weight": 1.0},
    })
    data = DataConfig(train_file=str(corpus), task="sentence-embedding", validation_file=STSB, retrieval_file=SQUAD,
                      validation_fraction=0.34, max_length=32)
    run = tmp_path / "run"
    card = compress(CompressConfig(recipe=recipe, recipe_source="tiny", model=str(encoder_base),
                                   teacher=str(encoder_base), data=data, output_dir=str(run), name="tiny-embeddings",
                                   threads=1))
    assert card is not None and card.task == "sentence-embedding" and card.labels == []
    assert card.task_settings == {"pooling": "mean", "normalize": True, "dimension": EMBEDDING_DIMENSION}
    assert card.architecture == arch and card.build["pytorch_sparsity"] >= 0.79
    assert card.sparsity is not None and card.sparsity >= 0.79
    for prefix in ("teacher", "student_fp32", "fp32_onnx", "int8_onnxruntime_graph", "int8_deepsparse_graph"):
        assert -1.0 <= card.metrics[f"{prefix}_sts_spearman"] <= 1.0
        assert 0.0 <= card.metrics[f"{prefix}_retrieval_mrr"] <= 1.0

    model_dir = run / "model"
    tokenizer, pad_id = load_tokenizer(model_dir / card.tokenizer, card.max_length, "truncate")
    engine = OnnxRuntimeEngine(model_dir / card.files["onnxruntime"])
    task = build_task(card, tokenizer, pad_id, engine.input_names)
    items = task.preprocess(["a gorgeous movie", "the plot was boring"])
    outputs = engine.run(task.collate(items))
    answers = task.answers(items, [[output[row] for output in outputs] for row in range(2)], PredictOptions())
    assert [len(answer["embedding"]) for answer in answers] == [EMBEDDING_DIMENSION] * 2
    assert [np.linalg.norm(answer["embedding"]) for answer in answers] == pytest.approx([1.0, 1.0], abs=1e-3)


def test_embedding_distillation_loss_counts_vectors_and_unpadded_token_states() -> None:
    vectors = torch.tensor([[1.0, 0.0]])
    states = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    teacher = SentenceEmbeddingOutput(sentence_embedding=vectors, pooled_embedding=vectors, token_embeddings=states)
    turned = torch.tensor([[[1.0, 0.0], [0.0, -1.0], [-5.0, 5.0]]])  # the second token opposite, the third padding
    student = SentenceEmbeddingOutput(sentence_embedding=vectors, pooled_embedding=vectors, token_embeddings=turned)
    mask = torch.tensor([[1, 1, 0]])
    assert embedding_distillation_loss(student, teacher, mask, EmbeddingTargets()).item() == pytest.approx(0.0)
    half = EmbeddingTargets(token_states_weight=0.5)
    assert embedding_distillation_loss(student, teacher, mask, half).item() == pytest.approx(0.5 * 1.0)
    mse = EmbeddingTargets(loss="mse", token_states_weight=1.0)
    assert embedding_distillation_loss(student, teacher, mask, mse).item() == pytest.approx(1.0)


def test_layer_states_are_averaged_over_layers_with_padding_left_out() -> None:
    vectors = torch.tensor([[1.0, 0.0]])
    same, opposite, padding = [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]
    embeddings = torch.tensor([[same, same]])
    teacher_states = (embeddings, torch.tensor([[same, same]]), torch.tensor([[same, same]]))
    # student layer 0 agrees with teacher layer 0; student layer 1 opposes teacher layer 1 on the kept token
    student_states = (embeddings, torch.tensor([[same, padding]]), torch.tensor([[opposite, same]]))
    teacher = SentenceEmbeddingOutput(sentence_embedding=vectors, pooled_embedding=vectors,
                                      hidden_states=teacher_states)
    student = SentenceEmbeddingOutput(sentence_embedding=vectors, pooled_embedding=vectors,
                                      hidden_states=student_states)
    targets = EmbeddingTargets(layer_states_weight=0.5)
    # (0 + 2) / 2 layers, weighted 0.5
    assert embedding_distillation_loss(student, teacher, torch.tensor([[1, 0]]), targets).item() == pytest.approx(0.5)


def test_similarity_loss_reads_the_in_batch_ranking_not_the_vectors_themselves() -> None:
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))[0]
    # a rotated and rescaled student has other vectors but the same similarities: nothing to learn
    assert similarity_loss(teacher @ rotation * 3.0, teacher, 0.05).item() == pytest.approx(0.0, abs=1e-5)
    # the first text's nearest neighbour is now the third, not the second
    swapped = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.9, 0.1, 0.0]])
    assert similarity_loss(swapped, teacher, 0.05).item() > 1.0
    assert similarity_loss(swapped, teacher, 1.0).item() < similarity_loss(swapped, teacher, 0.05).item()
    assert similarity_loss(teacher[:1], teacher[:1] * 2, 0.05).item() == 0.0
    vectors = SentenceEmbeddingOutput(sentence_embedding=teacher, pooled_embedding=teacher)
    moved = SentenceEmbeddingOutput(sentence_embedding=swapped, pooled_embedding=swapped)
    targets = EmbeddingTargets(similarity_weight=0.5)
    cosine = embedding_distillation_loss(moved, vectors, torch.ones(3, 1), EmbeddingTargets()).item()
    assert embedding_distillation_loss(moved, vectors, torch.ones(3, 1), targets).item() == pytest.approx(
        cosine + 0.5 * similarity_loss(swapped, teacher, 0.05).item())


def test_each_student_layer_learns_from_the_teacher_layer_it_came_from(encoder_base: Path) -> None:
    teacher = load_embedding_model(str(encoder_base)).eval()
    student = load_embedding_model(str(encoder_base)).eval()
    keep_layers(student, [0])
    encoded = tiny_subword_tokenizer()(["a gorgeous witty movie", "the plot"], padding=True, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    with torch.no_grad():
        student_states = student(**inputs, output_hidden_states=True).hidden_states
        teacher_states = teacher(**inputs, output_hidden_states=True).hidden_states
        assert student(**inputs).hidden_states is None  # the served forward leaves them out
    kept = inputs["attention_mask"].bool()
    assert layer_states_loss(student_states, teacher_states, kept, (0,)).item() < 1e-6
    # a random tiny layer changes its input little, but measurably
    assert layer_states_loss(student_states, teacher_states, kept, (1,)).item() > 5e-5
    with pytest.raises(ValueError, match="teacher layers"):
        layer_states_loss(student_states, teacher_states, kept, (2,))


def test_embedding_targets_need_an_embedding_task_and_states_a_fitting_teacher(encoder_base: Path) -> None:
    model = load_embedding_model(str(encoder_base))
    recipe = Recipe.model_validate({"student": {"layers": [0, 1]}, "distillation": {"layer_states_weight": 1.0}})
    embedding = DataConfig(train_file="texts.txt", task="sentence-embedding")
    assert embedding_targets(Plan(recipe, embedding, {}), model, model).teacher_layers == (0, 1)
    with pytest.raises(ConfigError, match="sentence-embedding task"):
        embedding_targets(Plan(recipe, DataConfig(train_file="train.tsv"), {}), model, model)
    beyond = recipe.model_copy(update={"student": recipe.student.model_copy(update={"layers": [0, 2]})})
    with pytest.raises(ConfigError, match="at least 3 layers"):
        embedding_targets(Plan(beyond, embedding, {}), model, model)
    wide = BertModel(BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64))
    with pytest.raises(ConfigError, match="as wide as the student"):
        embedding_targets(Plan(recipe, embedding, {}), model, wide)
    vectors_only = Recipe.model_validate({})
    with pytest.raises(ConfigError, match="as wide as the student"):  # the vectors alone are compared too
        embedding_targets(Plan(vectors_only, embedding, {}), model, wide)
    similarities = Recipe.model_validate({"distillation": {"similarity_weight": 1.0}})
    assert embedding_targets(Plan(similarities, embedding, {}), model, model).similarity_weight == 1.0
    with pytest.raises(ConfigError, match="similarity_weight are for the sentence-embedding task"):
        embedding_targets(Plan(similarities, DataConfig(train_file="train.tsv"), {}), model, model)
