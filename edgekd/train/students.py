"""Student models for distillation.

A student SPEC is either

- `layers=K` or `layers=i,j,k`: the teacher's own architecture with fewer encoder layers,
  initialised by copying the embeddings, the chosen teacher layers and everything after the
  encoder (pooler, classifier). `layers=K` picks K evenly spaced layers including the first and
  the last (DistilBERT-style alternate-layer copy), e.g. 6 -> 3 gives 0,2,5.
- anything else: a model reference (hub id, local dir, packaged offline model) with its own
  tokenizer and a fresh classification head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import ModelError

_LAYERS = re.compile(r"^layers=(.*)$")


@dataclass(frozen=True)
class StudentSpec:
    """A parsed `--student` value: `layers` (count or explicit indices) or a model `reference`."""

    text: str
    count: int | None = None
    indices: tuple[int, ...] | None = None
    reference: str | None = None

    @property
    def name(self) -> str:
        """A short directory-safe name, e.g. `layers-3`, `layers-0-2-5`, `all-MiniLM-L6-v2`."""
        if self.reference is not None:
            return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.reference.rstrip("/")).name) or "student"
        if self.indices is not None:
            return "layers-" + "-".join(str(i) for i in self.indices)
        return f"layers-{self.count}"


def parse_student_spec(text: str) -> StudentSpec:
    """Parse `layers=3`, `layers=0,2,5` or a model reference; raise `ModelError` on a malformed one."""
    text = text.strip()
    match = _LAYERS.match(text)
    if match is None:
        if not text:
            raise ModelError("empty --student value: use layers=K, layers=i,j,k or a model reference")
        return StudentSpec(text=text, reference=text)
    body = match.group(1).replace(" ", "")
    try:
        values = [int(v) for v in body.split(",")]
    except ValueError:
        raise ModelError(f"bad student spec '{text}': expected layers=K or layers=i,j,k with integers") from None
    if len(values) == 1:
        if values[0] < 1:
            raise ModelError(f"bad student spec '{text}': a student needs at least 1 layer (layers=1 or more)")
        return StudentSpec(text=text, count=values[0])
    if min(values) < 0 or len(set(values)) != len(values) or values != sorted(values):
        raise ModelError(f"bad student spec '{text}': layer indices must be distinct, ascending and >= 0")
    return StudentSpec(text=text, indices=tuple(values))


def evenly_spaced_layers(n_teacher: int, k: int) -> list[int]:
    """K of `n_teacher` layer indices, evenly spaced, including the first and the last."""
    if k == 1:
        return [n_teacher - 1]
    return [int(round(x)) for x in np.linspace(0, n_teacher - 1, k)]


def resolve_layers(spec: StudentSpec, n_teacher: int) -> list[int]:
    """The teacher layer indices a layer spec copies, checked against the teacher depth."""
    if spec.count is not None:
        if spec.count >= n_teacher:
            raise ModelError(f"student spec '{spec.text}' asks for {spec.count} layers but the teacher has "
                             f"only {n_teacher}: use layers=1..{n_teacher - 1}")
        return evenly_spaced_layers(n_teacher, spec.count)
    assert spec.indices is not None
    bad = [i for i in spec.indices if i >= n_teacher]
    if bad:
        raise ModelError(f"student spec '{spec.text}' names layer(s) {bad} but the teacher has {n_teacher} "
                         f"layers (indices 0..{n_teacher - 1})")
    return list(spec.indices)


def encoder_layer_path(model: Any) -> str:
    """Dotted name of the encoder's layer `ModuleList` (e.g. `bert.encoder.layer`), found
    generically: the `ModuleList` holding `config.num_hidden_layers` blocks."""
    import torch

    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and n:
            return name
    raise ModelError(f"cannot find the encoder layer list of {type(model).__name__} "
                     f"(no ModuleList of num_hidden_layers={n}); use a model reference as the student instead")


def build_layer_student(teacher: Any, layers: list[int]) -> Any:
    """A copy of `teacher`'s architecture with `len(layers)` encoder layers; student layer j holds
    exactly teacher layer `layers[j]`, all other weights (embeddings, pooler, head) copied."""
    import copy

    path = encoder_layer_path(teacher)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = type(teacher)(config)
    prefix = path + "."
    state = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            if int(index) in layers:
                state[f"{prefix}{layers.index(int(index))}.{rest}"] = value.clone()
        else:
            state[key] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        raise ModelError(f"layer copy of {type(teacher).__name__} left weights unmatched "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); use a model reference student")
    return student


def build_student(spec: StudentSpec, teacher_dir: Path, labels: list[str]) -> tuple[Any, Any, list[int] | None]:
    """(student model, its tokenizer, copied teacher layer indices or None) for a spec."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if spec.reference is None:
        teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir))
        layers = resolve_layers(spec, teacher.config.num_hidden_layers)
        return build_layer_student(teacher, layers), AutoTokenizer.from_pretrained(str(teacher_dir)), layers
    from edgekd.train.teacher import load_base_model

    model, tokenizer, _ = load_base_model(spec.reference, labels)
    return model, tokenizer, None
