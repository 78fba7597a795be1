"""Tiny random BERT and RoBERTa models for tests, built in-process (no downloads, no ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
)

WORDS = (
    "a", "gorgeous", "witty", "seductive", "movie", "it", "is", "dull", "and", "lifeless", "film", "with",
    "no", "point", "at", "all", "good", "bad", "great", "awful", "the", "of", "to", "in", "was", "not",
    "very", "fun", "boring", "plot", "acting", "story", "love", "hate", "john", "paris", "london", "google",
)
SUBWORDS = (  # a WordPiece vocabulary: "versailles" is vers ##ail ##les, "smithson" is smith ##son, ...
    "the", "king", "of", "france", "louis", "lived", "in", "vers", "##ail", "##les", "near", "paris", "who", "where",
    "did", "live", "what", "is", "a", "palace", "built", "by", "john", "smith", "##son", "works", "at", "goo", "##gle",
    "new", "york", "and", "london", "visited", "u", "s", "?", ".", ",", "'", "-",
)
NUM_LABELS = 3  # labels of the shared tiny classifiers (the bert_dir and roberta_dir fixtures)
NER_TAGS = ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")


def tiny_tokenizer(arch: str = "bert") -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer with BERT ([CLS] a [SEP] b [SEP]) or RoBERTa (<s> a </s></s> b </s>) framing."""
    if arch == "bert":
        cls, sep, pad, unk, mask = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"
    else:
        cls, sep, pad, unk, mask = "<s>", "</s>", "<pad>", "<unk>", "<mask>"
    specials = [pad, unk, cls, sep, mask]
    vocab = {token: i for i, token in enumerate(specials + list(dict.fromkeys(WORDS)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    if arch == "bert":
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} {sep} $B {sep}",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        cls_token=cls,
        sep_token=sep,
        pad_token=pad,
        unk_token=unk,
        mask_token=mask,
        model_input_names=["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else []),
    )


def tiny_subword_tokenizer() -> PreTrainedTokenizerFast:
    """A lower-casing WordPiece fast tokenizer with BERT framing that splits some words into sub-tokens."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + list(SUBWORDS))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
        mask_token="[MASK]", model_input_names=["input_ids", "attention_mask", "token_type_ids"],
    )


def _config(arch: str, vocab_size: int, **extra: object) -> PretrainedConfig:
    """A 2-layer, 32-wide BERT or RoBERTa configuration with eager attention (exportable)."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        attn_implementation="eager",
        **extra,
    )
    if arch == "bert":
        return BertConfig(**common)
    if arch == "roberta":
        return RobertaConfig(**common, pad_token_id=0, bos_token_id=2, eos_token_id=3, type_vocab_size=1)
    raise ValueError(f"unknown architecture {arch!r}")


def _labelled(labels: list[str]) -> dict[str, object]:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}}


def tiny_classifier(arch: str = "bert", num_labels: int = 2, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised 2-layer, 32-wide sequence classifier (eager attention, exportable)."""
    torch.manual_seed(seed)
    labels = [f"label_{i}" for i in range(num_labels)]
    config = _config(arch, len(tiny_tokenizer(arch).get_vocab()), **_labelled(labels))
    model = BertForSequenceClassification(config) if arch == "bert" else RobertaForSequenceClassification(config)
    return model.eval()


def tiny_question_answering(arch: str = "bert", vocab_size: int | None = None, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised tiny span-prediction model (start and end logits)."""
    torch.manual_seed(seed)
    config = _config(arch, vocab_size or len(tiny_tokenizer(arch).get_vocab()))
    return (BertForQuestionAnswering(config) if arch == "bert" else RobertaForQuestionAnswering(config)).eval()


def tiny_token_classifier(
    arch: str = "bert", tags: tuple[str, ...] = NER_TAGS, vocab_size: int | None = None, seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised tiny per-token classifier over IOB2 tags."""
    torch.manual_seed(seed)
    config = _config(arch, vocab_size or len(tiny_tokenizer(arch).get_vocab()), **_labelled(list(tags)))
    return (BertForTokenClassification(config) if arch == "bert" else RobertaForTokenClassification(config)).eval()


def make_tiny_model_dir(tmp_path: Path, arch: str = "bert", num_labels: int = 2, name: str = "tiny") -> Path:
    """A complete served model directory (ONNX, tokenizer.json, model.yaml) for a tiny random classifier."""
    from compression.export import export_model_dir

    output = Path(tmp_path) / name
    export_model_dir(tiny_classifier(arch, num_labels), tiny_tokenizer(arch), output, name=name, max_length=64)
    return output


def make_tiny_question_answering_dir(tmp_path: Path, name: str = "tiny-qa", max_length: int = 32) -> Path:
    """A served question-answering directory: a tiny random BERT over the sub-word tokenizer, short windows."""
    from compression.export import export_model_dir

    tokenizer = tiny_subword_tokenizer()
    model = tiny_question_answering(vocab_size=len(tokenizer.get_vocab()))
    settings = {"doc_stride": 4, "max_query_length": 8, "max_answer_length": 5}
    output = Path(tmp_path) / name
    export_model_dir(model, tokenizer, output, name=name, max_length=max_length, task="question-answering",
                     task_settings=settings)
    return output


def make_tiny_token_classifier_dir(
    tmp_path: Path, name: str = "tiny-ner", bias: dict[str, float] | None = None
) -> Path:
    """A served token-classification directory: a tiny random BERT over the sub-word tokenizer.

    `bias` makes the head constant: zero weights and these biases per tag, so every token gets the same tags' scores.
    """
    from compression.export import export_model_dir

    tokenizer = tiny_subword_tokenizer()
    model = tiny_token_classifier(vocab_size=len(tokenizer.get_vocab()))
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([bias.get(tag, 0.0) for tag in NER_TAGS]))
    output = Path(tmp_path) / name
    export_model_dir(model, tokenizer, output, name=name, max_length=64, task="token-classification")
    return output


EMBEDDING_DIMENSION = 32  # the tiny encoders' hidden size


class _MeanPooledEncoder(torch.nn.Module):
    """A sentence encoder as sentence-transformers builds one: token states, their mean over the attention mask, then
    (optionally) L2 normalisation; the output is [batch, hidden]."""

    def __init__(self, encoder: BertModel, normalize: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1) if self.normalize else pooled


def make_tiny_sentence_embedding_dir(
    tmp_path: Path, name: str = "tiny-embed", max_length: int = 32, normalize: bool = True, seed: int = 0
) -> Path:
    """A served sentence-embedding directory: a tiny random BERT over the sub-word tokenizer, mean-pooled (and
    normalised) inside the graph, whose one output `sentence_embedding` is [batch, EMBEDDING_DIMENSION].

    Built here rather than by `oberta export`, so serving tests do not depend on the compression half's support for
    the task; the graph is what that export writes (TorchScript exporter, opset 14, dynamic batch and sequence axes,
    the attention mask rewritten).
    """
    import onnxruntime as ort

    from compression.export import CHECK_TEXTS, OPSET, sample_inputs, save_tokenizer
    from service.runtime.card import ModelCard, save_card
    from service.runtime.graph.attention_mask import simplify_attention_mask_file

    torch.manual_seed(seed)
    tokenizer = tiny_subword_tokenizer()
    encoder = BertModel(_config("bert", len(tokenizer.get_vocab())), add_pooling_layer=False)
    model = _MeanPooledEncoder(encoder, normalize).eval()
    input_names = ["input_ids", "attention_mask", "token_type_ids"]
    batch = sample_inputs(tokenizer, input_names)
    output = Path(tmp_path) / name
    output.mkdir(parents=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            tuple(torch.from_numpy(batch[input_name]) for input_name in input_names),
            str(output / "model.onnx"),
            input_names=input_names,
            output_names=["sentence_embedding"],
            dynamic_axes={
                **{input_name: {0: "batch", 1: "sequence"} for input_name in input_names},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    simplify_attention_mask_file(output / "model.onnx")
    session = ort.InferenceSession(str(output / "model.onnx"), providers=["CPUExecutionProvider"])
    other = sample_inputs(tokenizer, input_names, CHECK_TEXTS)  # another batch size and length than the tracing one
    with torch.no_grad():
        expected = model(*(torch.from_numpy(other[input_name]) for input_name in input_names)).numpy()
    np.testing.assert_allclose(session.run(None, other)[0], expected, atol=1e-5)
    save_tokenizer(tokenizer, output)
    settings = {"pooling": "mean", "normalize": normalize, "dimension": EMBEDDING_DIMENSION}
    card = ModelCard(
        name=name, task="sentence-embedding", labels=[], max_length=max_length, architecture="bert",
        inputs=input_names, files={"onnxruntime": "model.onnx", "deepsparse": "model.onnx"}, task_settings=settings,
    )
    save_card(card, output)
    return output
