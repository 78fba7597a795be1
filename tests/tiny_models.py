"""Tiny random BERT and RoBERTa models for tests, built in-process (no downloads, no ../shared)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

WORDS = (
    "a", "gorgeous", "witty", "seductive", "movie", "it", "is", "dull", "and", "lifeless", "film", "with",
    "no", "point", "at", "all", "good", "bad", "great", "awful", "the", "of", "to", "in", "was", "not",
    "very", "fun", "boring", "plot", "acting", "story", "love", "hate", "john", "paris", "london", "google",
)


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


def tiny_classifier(arch: str = "bert", num_labels: int = 2, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised 2-layer, 32-wide sequence classifier (eager attention, exportable)."""
    import torch

    torch.manual_seed(seed)
    vocab_size = len(tiny_tokenizer(arch).get_vocab())
    labels = {i: f"label_{i}" for i in range(num_labels)}
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        num_labels=num_labels,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        attn_implementation="eager",
    )
    if arch == "bert":
        return BertForSequenceClassification(BertConfig(**common)).eval()
    if arch == "roberta":
        config = RobertaConfig(**common, pad_token_id=0, bos_token_id=2, eos_token_id=3, type_vocab_size=1)
        return RobertaForSequenceClassification(config).eval()
    raise ValueError(f"unknown architecture {arch!r}")


def make_tiny_model_dir(tmp_path: Path, arch: str = "bert", num_labels: int = 2, name: str = "tiny") -> Path:
    """A complete served model directory (ONNX, tokenizer.json, model.yaml) for a tiny random classifier."""
    from compression.export import export_model_dir

    output = Path(tmp_path) / name
    export_model_dir(tiny_classifier(arch, num_labels), tiny_tokenizer(arch), output, name=name, max_length=64)
    return output
