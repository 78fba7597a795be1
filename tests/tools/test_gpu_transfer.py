"""tools/gpu/transfer.py: a trained model packed against its float16 base comes back tensor for tensor."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tests.tiny_models import tiny_classifier

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "gpu" / "transfer.py"
_spec = importlib.util.spec_from_file_location("gpu_transfer", SCRIPT)
assert _spec is not None and _spec.loader is not None
transfer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(transfer)


def test_pack_and_unpack_restore_a_trained_run(tmp_path: Path) -> None:
    model = tiny_classifier("bert")
    base = tmp_path / "base"
    base.mkdir()
    save_file({k: v.half() for k, v in model.bert.state_dict().items() if v.is_floating_point()},
              str(base / "model.safetensors"))
    with torch.no_grad():  # frozen embeddings hold the float16-rounded base values, as on the GPU machine
        for parameter in model.bert.embeddings.parameters():
            parameter.copy_(parameter.half().float())
        model.bert.encoder.layer[0].output.dense.weight[:, ::2] = 0.0
    run = tmp_path / "run"
    model.save_pretrained(run / "trained")
    (run / "training_result.json").write_text(json.dumps({"metrics": {"student_fp32_accuracy": 0.5}}))

    parts = transfer.pack(run / "trained", base, tmp_path / "out" / "tiny")
    assert [p.name for p in parts] == ["tiny.tar.xz.part0"]
    transfer.unpack(tmp_path / "out" / "tiny", base, tmp_path / "back" / "trained")

    original = load_file(str(run / "trained" / "model.safetensors"))
    restored = load_file(str(tmp_path / "back" / "trained" / "model.safetensors"))
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    assert json.loads((tmp_path / "back" / "training_result.json").read_text()) == {
        "metrics": {"student_fp32_accuracy": 0.5}
    }
    assert (tmp_path / "back" / "trained" / "config.json").is_file()


def test_the_float16_base_keeps_a_sentence_encoders_pooling_files(tmp_path: Path) -> None:
    source = tmp_path / "encoder"
    tiny_classifier("bert").bert.save_pretrained(source)
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (source / "modules.json").write_text(json.dumps([{"idx": 2, "type": "sentence_transformers.models.Normalize"}]))

    transfer.make_base(str(source), tmp_path / "base")

    for name in ("1_Pooling/config.json", "modules.json"):
        assert (tmp_path / "base" / name).read_bytes() == (source / name).read_bytes()
    weights = load_file(str(tmp_path / "base" / "model.safetensors"))
    assert {tensor.dtype for tensor in weights.values() if tensor.is_floating_point()} == {torch.float16}
    assert json.loads((tmp_path / "base" / "config.json").read_text())["torch_dtype"] == "float32"
