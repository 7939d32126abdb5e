"""Differential attention retrofitted into a pre-trained encoder (Ye et al. 2024, "Differential
Transformer", arXiv 2410.05258; reference: microsoft/unilm Diff-Transformer/multihead_diffattn.py).

A converted layer keeps the pre-trained heads as the positive branch and adds a negative one:

    A = softmax(Q1 K1^T / sqrt(d)) - ramp * lambda * softmax(Q2 K2^T / sqrt(d)),   output A V
    lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init,
    lambda_init = 0.8 - 0.6 * exp(-0.3 * (l - 1))   (l: 1-based depth of the layer)

Q2/K2 start as a copy of the pre-trained Q/K (or zeros); `ramp` goes from 0 to 1 over the first
`RAMP_SHARE` of training steps (`RampCallback`), so a converted model starts out computing exactly
what it computed before. Departure from the paper: its per-head RMSNorm and (1 - lambda_init) output
scale are OFF by default, because they change the layer's output at ramp 0 (the norm rescales every
head to unit RMS, which the pre-trained output projection never saw); the `norm` flag turns them on
for a model trained that way from the start. lambda does not depend on the input: every export
(ONNX constant folding, Core ML const elimination) sees it as one constant per layer.

The conversion VALUE (`edgekd train --diff-attention VALUE`, recipe `teacher.diff_attention`,
student spec `layers=3,diff=VALUE`; no commas):

    VALUE     := SELECTION ["/" FLAG]...
    SELECTION := [PLACE ":"] AMOUNT | [at:] INDEX ("+" INDEX)... | all
    PLACE     := upper (default) | lower
    AMOUNT    := a share in (0, 1] with a decimal point (0.5: half the layers, rounded half up, >= 1)
               | a count (upper:2)
    FLAG      := norm (the paper's RMSNorm + (1 - lambda_init) scale) | zeros (Q2/K2 start at zero)

e.g. `0.5`, `upper:1`, `lower:0.25`, `0+2`, `at:3`, `all/norm`. Default placement is upper: see
docs/architecture.md ("Differential attention") for the measurement behind it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.checkpoint import Checkpoint, read_card, update_card
from edgekd.errors import ModelError

if TYPE_CHECKING:
    from edgekd.train.students import StudentSpec


CARD_KEY = "diff_attention"  # the entry in the checkpoint's card that records the conversion
DEFAULT_PLACE = "upper"
RAMP_SHARE = 0.25  # share of training steps over which the subtracted term ramps from 0 to 1
LAMBDA_STD = 0.1  # init of lq1, lk1, lq2, lk2 (the reference code's normal(0, 0.1))
NORM_EPS = 1e-5
FLAGS = {"norm": "the paper's per-head RMSNorm and (1 - lambda_init) scale (breaks start equivalence)",
         "zeros": "Q2/K2 of the negative branch start at zero instead of a copy of Q/K"}
_GRAMMAR = ("use a share (0.5), a placed share or count (upper:0.25, lower:2), explicit layers (0+2, at:3) "
            "or all, optionally followed by /norm or /zeros")


@dataclass(frozen=True)
class DiffSpec:
    """A parsed conversion VALUE; `layers(n)` resolves it against a model of n layers."""

    text: str
    place: str = DEFAULT_PLACE
    share: float | None = None
    count: int | None = None
    indices: tuple[int, ...] | None = None
    norm: bool = False
    init: str = "copy"  # "copy" | "zeros"

    def layers(self, n_layers: int) -> list[int]:
        """0-based indices of the converted layers of an `n_layers`-layer encoder."""
        if self.indices is not None:
            bad = [i for i in self.indices if i >= n_layers]
            if bad:
                raise ModelError(f"diff={self.text} names layer(s) {bad} but the model has {n_layers} layers "
                                 f"(0..{n_layers - 1})")
            return list(self.indices)
        k = self.count if self.count is not None else max(1, math.floor(self.share * n_layers + 0.5))
        if k > n_layers:
            raise ModelError(f"diff={self.text} converts {k} layers but the model has {n_layers}; "
                             f"use {self.place}:1..{n_layers} or a share such as 0.5")
        return list(range(n_layers - k, n_layers)) if self.place == "upper" else list(range(k))


def parse_diff(text: str) -> DiffSpec:
    """Parse a conversion VALUE (grammar in the module docstring); `ModelError` names the fix."""
    raw = str(text).strip()
    head, *flags = raw.split("/")
    bad = [f for f in flags if f not in FLAGS]
    if bad or len(set(flags)) != len(flags):
        raise ModelError(f"diff={raw}: unknown or repeated flag {bad or flags}; flags are "
                         + ", ".join(f"/{k} ({v})" for k, v in FLAGS.items()))
    common = {"text": raw, "norm": "norm" in flags, "init": "zeros" if "zeros" in flags else "copy"}
    if head == "all":
        return DiffSpec(share=1.0, **common)
    if head.startswith("at:") or "+" in head:
        parts = head.removeprefix("at:").split("+")
        if not all(p.isdigit() for p in parts):
            raise ModelError(f"diff={raw}: layer indices must be integers joined by '+' (0+2, at:3); {_GRAMMAR}")
        indices = [int(p) for p in parts]
        if indices != sorted(set(indices)):
            raise ModelError(f"diff={raw}: layer indices must be distinct and ascending, e.g. 0+2")
        return DiffSpec(indices=tuple(indices), **common)
    place, sep, amount = head.rpartition(":")
    if sep and place not in ("upper", "lower"):
        raise ModelError(f"diff={raw}: placement '{place}' is not upper or lower; {_GRAMMAR}")
    place = place or DEFAULT_PLACE
    if re.fullmatch(r"\d+", amount) and sep:
        if int(amount) < 1:
            raise ModelError(f"diff={raw}: convert at least one layer ({place}:1)")
        return DiffSpec(place=place, count=int(amount), **common)
    if re.fullmatch(r"\d*\.\d+|\d+\.\d*", amount) and 0.0 < float(amount) <= 1.0:
        return DiffSpec(place=place, share=float(amount), **common)
    if re.fullmatch(r"\d+", amount):
        raise ModelError(f"diff={raw} is ambiguous: write {DEFAULT_PLACE}:{amount} for {amount} layer(s) or "
                         f"at:{amount} for layer index {amount}")
    raise ModelError(f"diff={raw}: cannot read '{head}'; {_GRAMMAR}")


def lambda_init(depth: int) -> float:
    """The paper's lambda_init for a layer at 1-based `depth`: 0.8 - 0.6 * exp(-0.3 * (depth - 1))."""
    return 0.8 - 0.6 * math.exp(-0.3 * (depth - 1))


def _module_class() -> Any:
    """`DiffSelfAttention` (its module imports torch; this one does not, so the CLI validates early)."""
    from edgekd.train.diff_module import DiffSelfAttention

    return DiffSelfAttention


def converted_layers(model: Any) -> list[int]:
    """Indices of the encoder layers of `model` whose self-attention is differential."""
    from edgekd.train.students import encoder_layer_path

    cls = _module_class()
    layers = model.get_submodule(encoder_layer_path(model))
    return [i for i, layer in enumerate(layers) if any(isinstance(m, cls) for m in layer.modules())]


def convert(model: Any, layers: list[int], norm: bool = False, init: str = "copy") -> Any:
    """Replace the self-attention of encoder `layers` (0-based) of `model` in place; returns `model`."""
    from edgekd.train.students import encoder_layer_path

    cls = _module_class()
    blocks = model.get_submodule(encoder_layer_path(model))
    for i in layers:
        attention = getattr(blocks[i], "attention", None)
        original = getattr(attention, "self", None)
        if original is None or not all(hasattr(original, a) for a in ("query", "key", "value")):
            raise ModelError(f"cannot convert layer {i} of {type(model).__name__} to differential attention: "
                             "it has no BERT-style attention.self.query/key/value; use a BERT-family model")
        if isinstance(original, cls):
            continue
        attention.self = cls(original, depth=i + 1, norm=norm, init=init).train(original.training)
    return model


def apply(model: Any, spec: DiffSpec | str) -> Any:
    """Convert the layers a VALUE selects (`edgekd train --diff-attention`, a student's diff=)."""
    spec = parse_diff(spec) if isinstance(spec, str) else spec
    return convert(model, spec.layers(model.config.num_hidden_layers), spec.norm, spec.init)


def card_entry(model: Any, spec_text: str | None = None) -> dict[str, Any] | None:
    """What `edgekd-model.json` records under CARD_KEY (None for a model with no converted layer):
    layers, flags, and per layer lambda_init, lambda and the ramp it was saved at."""
    layers = converted_layers(model)
    if not layers:
        return None
    from edgekd.train.students import encoder_layer_path

    blocks = model.get_submodule(encoder_layer_path(model))
    mods = [blocks[i].attention.self for i in layers]
    return {"spec": spec_text, "layers": layers, "norm": mods[0].use_norm, "init": mods[0].init,
            "lambda_init": [round(float(m.lambda_init), 6) for m in mods],
            "lambda": [round(float(m.lambda_full().detach()), 6) for m in mods],
            "ramp": [round(float(m.ramp), 6) for m in mods], "paper": "arXiv 2410.05258"}


def record(out: Path, model: Any, spec_text: str | None = None) -> None:
    """Add the conversion (if any) to the card of `out` already written."""
    entry = card_entry(model, spec_text)
    if entry is not None:
        update_card(out, **{CARD_KEY: entry})


def card_of(model_dir: str | Path | Checkpoint) -> dict[str, Any] | None:
    """The CARD_KEY entry of a checkpoint's card, or None for a plain checkpoint."""
    card = model_dir.card if isinstance(model_dir, Checkpoint) else read_card(model_dir)
    return card.get(CARD_KEY)


def rebuild(model_dir: str | Path) -> Any | None:
    """The hybrid model of a checkpoint whose card records a conversion (None for a plain one):
    the architecture from config.json, the recorded layers converted, then every weight loaded strictly."""
    entry = card_of(model_dir)
    if entry is None:
        return None
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_config(config)
    convert(model, list(entry["layers"]), bool(entry.get("norm")), entry.get("init", "copy"))
    state = _state_dict(Path(model_dir))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ModelError(f"{model_dir}: weights do not fit the recorded differential-attention layers "
                         f"{entry['layers']} (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                         f"the card's '{CARD_KEY}' entry and the weights come from different models")
    return model.eval()


def _state_dict(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    single = model_dir / "model.safetensors"
    if single.is_file():
        return load_file(str(single))
    index = model_dir / "model.safetensors.index.json"
    if not index.is_file():
        raise ModelError(f"{model_dir} has no model.safetensors: a differential-attention checkpoint is "
                         "rebuilt from safetensors weights; save it with save_pretrained(safe_serialization=True)")
    state: dict[str, Any] = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        state.update(load_file(str(model_dir / shard)))
    return state


def convert_student(spec: StudentSpec, student: Any, teacher: Checkpoint | Path, copied: list[int] | None) -> Any:
    """A student's conversion (`students.build_student` calls it for every spec): the layers its own
    `diff=` option selects, plus every layer copied from a converted teacher layer (with that layer's
    trained negative branch, lambda and ramp). A student with neither comes back unchanged."""
    value = spec.option("diff")
    own = parse_diff(value) if value else None
    recorded = card_of(teacher) if copied is not None else None
    inherited = [j for j, i in enumerate(copied or []) if recorded and i in recorded["layers"]]
    if own is None and not inherited:
        return student
    if spec.option("heads") is not None:
        raise ModelError(f"student spec '{spec.text}': heads= (head pruning) does not handle differential-"
                         "attention layers yet; drop heads= or diff= (or distill from a plain teacher)")
    if recorded and own and own.norm != bool(recorded.get("norm")):
        raise ModelError(f"diff={own.text}: the teacher's converted layers have norm={recorded.get('norm')}; "
                         f"use the same flags as the teacher ({recorded.get('spec')}) or a plain teacher")
    if own is not None:
        apply(student, own)
    if inherited:
        convert(student, inherited, bool(recorded.get("norm")), recorded.get("init", "copy"))
        state = Checkpoint.open(teacher).model().state_dict()  # the rebuilt hybrid: its weights as saved
        _copy_negative_branch(student, state, {j: copied[j] for j in inherited})
    return student


def diff_only_keys(keys: list[str]) -> list[str]:
    """The keys among `keys` (state-dict names) that only a differential layer has (its negative
    branch, lambdas, ramp, norm): what a plain copy of a converted teacher layer leaves out."""
    names = _module_class().DIFF_NAMES
    return [k for k in keys if ".attention.self." in k and k.split(".attention.self.", 1)[1].split(".")[0] in names]


def _copy_negative_branch(student: Any, state: dict[str, Any], mapping: dict[int, int]) -> None:
    """Load the differential-only weights (query2, key2, lambdas, norm, ramp) of teacher layer
    mapping[j] (`state`: the teacher's state dict) into student layer j; the positive branch was
    copied with the rest of the layer."""
    from edgekd.train.students import encoder_layer_path

    path = encoder_layer_path(student)
    blocks = student.get_submodule(path)
    for j, i in mapping.items():
        prefix = f"{path}.{i}.attention.self."
        module = blocks[j].attention.self
        own = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix) and k[len(prefix):].split(".")[0] in module.DIFF_NAMES}
        module.load_state_dict(own, strict=False)


def ramp_callback(model: Any, share: float = RAMP_SHARE) -> Any | None:
    """A Trainer callback ramping every converted layer of `model` still below ramp 1 (None when
    there is none): ramp = step / (share * total steps), capped at 1."""
    from edgekd.train.diff_module import RampCallback

    cls = _module_class()
    mods = [m for m in model.modules() if isinstance(m, cls) and float(m.ramp) < 1.0]
    return RampCallback(mods, share) if mods else None


def prepare(model: Any, value: str | None) -> Any:
    """`model` with the layers a VALUE selects converted (`edgekd train --diff-attention`); unchanged for None."""
    return apply(model, value) if value else model


def attach_ramp(trainer: Any) -> None:
    """Give `trainer` the ramp callback when its model has converted layers still below ramp 1."""
    callback = ramp_callback(trainer.model)
    if callback is not None:
        trainer.add_callback(callback)
