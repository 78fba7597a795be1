"""Compression recipes: YAML parsed into pydantic models that reject unknown keys (a typo is an error)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compression.training_loop import TrainingLoop
from service.runtime.errors import ConfigError, MissingFile

EmbeddingLoss = Literal["cosine", "mse"]

RECIPES_PACKAGE = "compression.recipes"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OBSRecipe(_Strict):
    """Optimal BERT Surgeon settings."""

    block_size: int = Field(50, ge=1, description="Fisher block size (a multiple of the pruning group)")
    num_grads: int = Field(1024, ge=1, description="gradients m in the empirical Fisher")
    grad_batch_size: int = Field(16, ge=1, description="examples per gradient sample")
    damp: float = Field(1e-7, gt=0, description="dampening added to the Fisher diagonal")
    recomputations: int = Field(1, ge=1, description="Fisher recomputations per pruning update")


STRUCTURE_GROUPS = {"unstructured": 1, "4-block": 4}  # pattern: weights pruned together along the input dimension


class PruningRecipe(_Strict):
    """Gradual pruning of the encoder's Linear layers."""

    scorer: Literal["obs", "magnitude"] = Field("obs", description="saliency: OBS or the magnitude baseline")
    initial_sparsity: float = Field(0.7, ge=0, lt=1, description="one-shot sparsity at the start epoch")
    final_sparsity: float = Field(0.9, ge=0, lt=1, description="sparsity reached at the end epoch")
    start_epoch: float = Field(0.0, ge=0, description="epoch of the first (one-shot) pruning step")
    end_epoch: float = Field(2.0, ge=0, description="epoch of the last pruning step; masks stay fixed after")
    update_interval_epochs: float = Field(0.25, gt=0, description="epochs between pruning steps")
    schedule: Literal["cubic"] = Field("cubic", description="sparsity ramp between start and end")
    scope: Literal["global", "per-layer"] = Field("global", description="one threshold for all layers or each")
    structure: Literal["unstructured", "4-block"] = Field(
        "unstructured", description="single weights, or groups of 4 along the input dimension"
    )
    modules: list[str] | None = Field(
        None, description="regexes of Linear module names to prune (default: the encoder's Linear layers)"
    )
    obs: OBSRecipe = Field(default_factory=lambda: OBSRecipe.model_validate({}))

    @model_validator(mode="after")
    def _check(self) -> PruningRecipe:
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError("initial_sparsity must not exceed final_sparsity")
        if self.end_epoch < self.start_epoch:
            raise ValueError("end_epoch must not come before start_epoch")
        return self

    @property
    def group(self) -> int:
        """Weights pruned together."""
        return STRUCTURE_GROUPS[self.structure]


class StudentRecipe(_Strict):
    """The student's shape before pruning: the teacher's layers it keeps, and heads and neurons it loses."""

    layers: list[int] | None = Field(
        None, description="indices of the starting model's encoder layers the student keeps, in order (default: "
        "all), e.g. [0, 2, 4] for a 3-layer student of a 6-layer model"
    )
    heads: int | None = Field(
        None, ge=1, description="attention heads kept in every layer, chosen by second-order scores (default: all)"
    )
    neurons: int | None = Field(
        None, ge=1, description="feed-forward neurons kept in every layer, chosen by second-order scores "
        "(default: all)"
    )
    calibration_samples: int = Field(
        256, ge=1, description="training examples whose layer inputs score the heads and neurons"
    )

    @property
    def prunes_structures(self) -> bool:
        """Whether heads or neurons are removed."""
        return self.heads is not None or self.neurons is not None


class DistillationRecipe(_Strict):
    """Knowledge distillation from the dense teacher."""

    teacher: str | None = Field(None, description="teacher model directory (the CLI's --teacher overrides it)")
    hardness: float = Field(1.0, ge=0, le=1, description="weight of the distillation loss against the labels")
    temperature: float = Field(2.0, gt=0, description="softmax temperature")
    embedding_loss: EmbeddingLoss = Field(
        "cosine", description="sentence embedding: 'cosine' (1 - cosine of the served vectors) or 'mse' (of the "
        "pooled vectors before normalisation)"
    )
    token_states_weight: float = Field(
        0.0, ge=0, description="sentence embedding: weight of 1 - cosine similarity of each token's final state"
    )
    layer_states_weight: float = Field(
        0.0, ge=0, description="sentence embedding: weight of 1 - cosine similarity of each token's state after every "
        "student layer against the teacher layer it started from (student.layers), averaged over the layers; the "
        "teacher must have the student's width"
    )
    similarity_weight: float = Field(
        0.0, ge=0, description="sentence embedding: weight of the in-batch similarity loss: KL divergence between the "
        "teacher's and the student's softmax over each text's cosine similarities to the batch's other texts (the "
        "ranking that retrieval reads)"
    )
    similarity_temperature: float = Field(
        0.05, gt=0, description="sentence embedding: softmax temperature of the in-batch similarities (lower weighs "
        "the nearest texts more)"
    )


OnnxRuntimeForm = Literal["static", "fused-dynamic"]
STATIC_SETTINGS = {"keep_fp32", "int8_attention", "integer_matmuls", "per_channel"}


class EngineQuantization(_Strict):
    """How one engine's INT8 file is written (the fastest graph differs per engine)."""

    form: OnnxRuntimeForm = Field(
        "static",
        description="'static': calibrated QOperator INT8 with the settings below; 'fused-dynamic' (ONNX Runtime's "
        "file only): attention, layer norms and GELU fused, then dynamic per-channel INT8 (QAttention, "
        "MatMulInteger), the form ONNX Runtime runs fastest; the settings below do not apply to it",
    )
    keep_fp32: list[str] = Field(
        default_factory=list,
        description="regexes of MatMul node names left in FP32 (still sparse), e.g. 'layer\\.0/output/dense/' "
        "for the first feed-forward output layer, whose outputs have a wide range",
    )
    int8_attention: bool = Field(
        False, description="also run the attention scores (Q·Kᵀ) and context (softmax·V) products in INT8"
    )
    integer_matmuls: bool = Field(
        False,
        description="write every INT8 MatMul as MatMulInteger → Cast → Mul (exact int32 result, no requantization "
        "of the output to 8 bits) instead of QLinearMatMul; DeepSparse fuses this form, softmax included",
    )
    per_channel: bool = Field(
        False,
        description="one weight scale per output column instead of one per matrix (finer weights; DeepSparse "
        "keeps it on its fast path)",
    )

    @model_validator(mode="after")
    def _check(self) -> EngineQuantization:
        fields = type(self).model_fields
        changed = sorted(name for name in STATIC_SETTINGS
                         if getattr(self, name) != fields[name].get_default(call_default_factory=True))
        if self.form != "static" and changed:
            raise ValueError(f"{', '.join(changed)}: settings of the static form, not of {self.form}")
        return self


class OnnxRuntimeQuantization(EngineQuantization):
    """The ONNX Runtime file: the fused-dynamic form unless the recipe asks for the static one."""

    form: OnnxRuntimeForm = Field("fused-dynamic", description=EngineQuantization.model_fields["form"].description)


def _deepsparse_default() -> EngineQuantization:
    return EngineQuantization.model_validate({"int8_attention": True, "integer_matmuls": True})


class QatRecipe(_Strict):
    """Quantization-aware training after pruning: the pruned student trains on with fake-quantized INT8 weights and
    layer inputs (compression/qat.py), its masks held, distilled from the teacher as before."""

    epochs: float = Field(1.0, gt=0, description="epochs of quantization-aware training after the pruning run")
    learning_rate: float = Field(1e-5, gt=0, description="its peak learning rate (decays linearly)")
    averaging_constant: float = Field(
        0.01, gt=0, le=1, description="weight of each batch in the moving average of a layer input's range"
    )


class QuantizationRecipe(_Strict):
    """INT8 after pruning, one file per engine made from the exported ONNX graph.

    Defaults are what measured fastest per engine at equal accuracy: for DeepSparse, calibrated static INT8 with
    every product as MatMulInteger; for ONNX Runtime, the fused-dynamic form (on the 80%-sparse embedding model:
    STS-B 0.7814 against 0.7815 for the static file, 219 / 244 items/s at batch 1 / 16 against 148 / 183).
    """

    method: Literal["static", "qat", "none"] = Field(
        "static", description="INT8 files (static for DeepSparse, the onnxruntime form for ONNX Runtime) from the "
        "pruned model; 'qat': the same files after quantization-aware training (see qat), the static files of the "
        "model before it made too, each engine shipping whichever scores higher on validation; or keep FP32")
    qat: QatRecipe = Field(default_factory=lambda: QatRecipe.model_validate({}),
                           description="quantization-aware training, when method is qat")
    calibration_samples: int = Field(512, ge=1, description="training examples used for calibration")
    calibration_method: Literal["minmax", "percentile", "entropy"] = Field(
        "minmax", description="how activation ranges are chosen; percentile and entropy (ONNX Runtime's histogram "
        "calibrators) hold every activation of the calibration samples in memory: on 384-token QA windows of the "
        "5-layer student they were killed for memory at 14-15 GB with 128 samples as with 512"
    )
    deepsparse: EngineQuantization = Field(default_factory=_deepsparse_default, description="the DeepSparse file")
    onnxruntime: OnnxRuntimeQuantization = Field(
        default_factory=lambda: OnnxRuntimeQuantization.model_validate({}), description="the ONNX Runtime file"
    )

    @model_validator(mode="after")
    def _check(self) -> QuantizationRecipe:
        if self.deepsparse.form != "static":
            raise ValueError("deepsparse.form: DeepSparse runs the static form only (its fast path needs it)")
        if self.method == "qat" and not self.deepsparse.per_channel:
            raise ValueError("method qat trains weights rounded per output channel: set deepsparse.per_channel: true")
        return self

    def for_engine(self, engine: str) -> EngineQuantization:
        """The settings of one engine's file."""
        return self.deepsparse if engine == "deepsparse" else self.onnxruntime


class Recipe(_Strict):
    """A whole compression recipe."""

    description: str = ""
    training: TrainingLoop = Field(default_factory=lambda: TrainingLoop.model_validate({}))
    student: StudentRecipe = Field(default_factory=lambda: StudentRecipe.model_validate({}))
    pruning: PruningRecipe = Field(default_factory=lambda: PruningRecipe.model_validate({}))
    distillation: DistillationRecipe = Field(default_factory=lambda: DistillationRecipe.model_validate({}))
    quantization: QuantizationRecipe = Field(default_factory=lambda: QuantizationRecipe.model_validate({}))

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.pruning.end_epoch > self.training.epochs:
            raise ValueError("pruning.end_epoch is after the last training epoch")
        neurons, group = self.student.neurons, self.pruning.group
        if neurons is not None and neurons % group:
            raise ValueError(f"student.neurons ({neurons}) must be a multiple of {group} for {self.pruning.structure} "
                             "pruning: blocks are formed among the kept neurons")
        return self


def shipped_recipes() -> list[str]:
    """Names of the recipes that come with the package."""
    folder = resources.files(RECIPES_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _readable(error: ValidationError) -> str:
    """pydantic's errors as one line each: ``training.max_lenght: Extra inputs are not permitted``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "recipe"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Parse a recipe from a YAML path or a shipped recipe's name; a missing or invalid recipe is a ConfigError."""
    path = Path(name_or_path)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        shipped = resources.files(RECIPES_PACKAGE) / f"{name_or_path}.yaml"
        if not shipped.is_file():
            raise MissingFile(f"no recipe file {path} and no shipped recipe of that name; "
                              f"shipped: {', '.join(shipped_recipes())}")
        text = shipped.read_text(encoding="utf-8")
    try:
        return Recipe.model_validate(yaml.safe_load(text) or {})
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {name_or_path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"recipe {name_or_path}: {_readable(exc)}") from exc


def with_overrides(recipe: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """A copy of the recipe with settings replaced by dotted path (``{"training.max_length": 256}``), validated
    again; the recipe given is left as it was."""
    settings = recipe.model_dump()
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        section = settings
        for name in sections:
            section = section.get(name) if isinstance(section, dict) else None  # type: ignore[assignment]
        if not isinstance(section, dict) or key not in section:
            raise ConfigError(f"no recipe setting {dotted!r} to override")
        section[key] = value
    try:
        return Recipe.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(f"recipe overrides {dict(overrides)}: {_readable(exc)}") from exc
