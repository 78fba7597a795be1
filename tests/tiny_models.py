"""Tiny random BERT, RoBERTa and MPNet models for tests, built in-process (no downloads, no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    MPNetConfig,
    MPNetModel,
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
    """A 2-layer, 32-wide BERT, RoBERTa or MPNet configuration with eager attention (exportable)."""
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
    if arch == "mpnet":  # no token types; a relative position bias in every attention layer
        return MPNetConfig(**common, pad_token_id=0, bos_token_id=2, eos_token_id=3)
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


SENTENCE_TRANSFORMERS_MODULES = [
    {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


ENCODERS = {"bert": BertModel, "mpnet": MPNetModel}


def make_tiny_encoder_base(path: Path, normalize: bool = True, seed: int = 0, arch: str = "bert") -> Path:
    """A tiny random BERT (or MPNet) encoder over the sub-word tokenizer, saved as a sentence-transformers model
    directory that mean-pools and (optionally) normalises: the base a sentence-embedding compression starts from."""
    torch.manual_seed(seed)
    tokenizer = tiny_subword_tokenizer()
    ENCODERS[arch](_config(arch, len(tokenizer.get_vocab()))).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    modules = SENTENCE_TRANSFORMERS_MODULES if normalize else SENTENCE_TRANSFORMERS_MODULES[:2]
    (path / "modules.json").write_text(json.dumps(modules))
    return path


def make_tiny_sentence_embedding_dir(
    tmp_path: Path, name: str = "tiny-embed", max_length: int = 32, normalize: bool = True, seed: int = 0
) -> Path:
    """A served sentence-embedding directory: the tiny encoder, mean-pooled (and normalised) inside the graph, whose
    one output `sentence_embedding` is [batch, EMBEDDING_DIMENSION], written by `oberta export`'s code."""
    from compression.embedding_model import load_embedding_model, model_settings
    from compression.export import export_model_dir

    base = make_tiny_encoder_base(Path(tmp_path) / f"{name}-base", normalize, seed)
    model = load_embedding_model(str(base))
    export_model_dir(model, tiny_subword_tokenizer(), Path(tmp_path) / name, name, max_length,
                     task="sentence-embedding", task_settings=model_settings(model).model_dump())
    return Path(tmp_path) / name
