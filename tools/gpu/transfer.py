"""Moving trained models between this machine and a lent GPU machine inside small transfer limits.

The GPU machine gets the base encoder in float16 (half the bytes; the recipes freeze the embeddings, so
the student's embeddings are exactly these rounded values) and sends back only what training changed,
lzma-compressed (pruned weights are mostly zeros), in parts of at most 15 MB.

    python tools/gpu/transfer.py base all-MiniLM-L6-v2 .gpu/minilm-fp16      # here, before the run
    python tools/gpu/transfer.py pack RUN/trained .gpu/minilm-fp16 OUT/name  # there, after training
    python tools/gpu/transfer.py unpack OUT/name .gpu/minilm-fp16 RUN/trained  # here, after the run
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import shutil
import sys
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load, load_file, save, save_file

PART_BYTES = 15_000_000
WEIGHTS = "model.safetensors"
SHARED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json",
                "1_Pooling/config.json")  # the last two: a sentence encoder's pooling and normalisation
DROPPED = "dropped.json"


def make_base(name: str, output: Path) -> None:
    """Write the base model's weights in float16, with a config that still loads it as float32."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from compression.base_models import resolve_base_model

    source = Path(resolve_base_model(name))
    output.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(source / WEIGHTS))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, str(output / WEIGHTS))
    config = json.loads((source / "config.json").read_text())
    config.update({"dtype": "float32", "torch_dtype": "float32"})
    (output / "config.json").write_text(json.dumps(config, indent=2))
    for file in SHARED_FILES:
        if (source / file).is_file():
            (output / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / file, output / file)


def _base_weights(base: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(base / WEIGHTS)).items()}


def _base_key(key: str, base: dict[str, torch.Tensor]) -> str | None:
    """The base checkpoint's name for a fine-tuned model's tensor (which adds a prefix such as ``bert.``)."""
    for candidate in (key, key.split(".", 1)[-1]):
        if candidate in base:
            return candidate
    return None


def pack(trained: Path, base_dir: Path, stem: Path) -> list[Path]:
    """Compress what differs from the base into ``stem.tar.xz.partN`` files; returns them."""
    base = _base_weights(base_dir)
    weights = load_file(str(trained / WEIGHTS))
    kept, dropped = {}, {}
    for key, tensor in weights.items():
        base_key = _base_key(key, base)
        if base_key is not None and torch.equal(tensor.float(), base[base_key]) and tensor.dtype == torch.float32:
            dropped[key] = base_key
        else:
            kept[key] = tensor.contiguous()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, WEIGHTS, save(kept))
        _add(tar, DROPPED, json.dumps(dropped).encode())
        records = sorted(trained.parent.glob("*.json"))  # training_result.json and the like, beside trained/
        files = [p for p in sorted(trained.iterdir()) if p.suffix in (".json", ".txt")]  # config, tokenizer, state
        for path in records + files:
            _add(tar, str(path.relative_to(trained.parent)), path.read_bytes())
    data = lzma.compress(buffer.getvalue(), preset=1)  # fast: zeros compress well at any preset
    stem.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for index in range(0, len(data), PART_BYTES):
        part = stem.with_name(f"{stem.name}.tar.xz.part{index // PART_BYTES}")
        part.write_bytes(data[index : index + PART_BYTES])
        parts.append(part)
    print(f"packed {len(kept)} tensors ({len(dropped)} equal to the base left out) into {len(data) / 1e6:.1f} MB")
    return parts


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def unpack(stem: Path, base_dir: Path, trained: Path) -> None:
    """Rebuild the ``trained/`` directory (and the run's JSON records beside it) from the packed parts."""
    parts = sorted(stem.parent.glob(f"{stem.name}.tar.xz.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise FileNotFoundError(f"no {stem}.tar.xz.part* files")
    data = lzma.decompress(b"".join(p.read_bytes() for p in parts))
    trained.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    base = _base_weights(base_dir)
    weights = dict(load(members.pop(WEIGHTS)))
    for key, base_key in json.loads(members.pop(DROPPED)).items():
        weights[key] = base[base_key].clone()
    save_file(weights, str(trained / WEIGHTS))
    for name, content in members.items():
        target = trained.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    print(f"unpacked {len(weights)} tensors into {trained}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="float16 copy of a base model")
    base.add_argument("name")
    base.add_argument("output", type=Path)
    packer = sub.add_parser("pack", help="pack a trained/ directory against the base")
    packer.add_argument("trained", type=Path)
    packer.add_argument("base", type=Path)
    packer.add_argument("stem", type=Path)
    unpacker = sub.add_parser("unpack", help="rebuild a trained/ directory from packed parts")
    unpacker.add_argument("stem", type=Path)
    unpacker.add_argument("base", type=Path)
    unpacker.add_argument("trained", type=Path)
    args = parser.parse_args()
    if args.command == "base":
        make_base(args.name, args.output)
    elif args.command == "pack":
        pack(args.trained, args.base, args.stem)
    else:
        unpack(args.stem, args.base, args.trained)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
