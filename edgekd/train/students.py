"""Student models for distillation.

A student SPEC is either

- `layers=K` or `layers=i,j,k`: the teacher's own architecture with fewer encoder layers,
  initialised by copying the embeddings, the chosen teacher layers and everything after the
  encoder (pooler, classifier). `layers=K` picks K evenly spaced layers including the first and
  the last (DistilBERT-style alternate-layer copy), e.g. 6 -> 3 gives 0,2,5.
- anything else: a model reference (hub id, local dir, packaged offline model) with its own
  tokenizer and a fresh classification head.

A layer spec may add width and attention options after the layers, comma-separated:
`layers=3,ffn=768,heads=8,diff=...` (each optional, any order after `layers`). `ffn` and `heads`
(positive ints) are the intermediate size and attention heads per layer that width pruning keeps;
`diff` is the differential-attention conversion (its grammar is checked by the code that applies
it). The parsed values land in `StudentSpec.options`; `STUDENT_OPTIONS` lists the keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.checkpoint import Checkpoint
from edgekd.errors import ModelError
from edgekd.train.width import WIDTH_OPTIONS

_LAYERS = re.compile(r"^layers=(.*)$")
# Keys a layer spec may carry after `layers=...`: name -> what it means (for errors and help).
STUDENT_OPTIONS = {
    "ffn": "FFN intermediate size kept per layer by width pruning (positive int)",
    "heads": "attention heads kept per layer by width pruning (positive int)",
    "diff": "layers converted to differential attention",
}
_INT_OPTIONS = WIDTH_OPTIONS  # the keys that take a positive int


@dataclass(frozen=True)
class StudentSpec:
    """A parsed `--student` value: `layers` (count or explicit indices) or a model `reference`."""

    text: str
    count: int | None = None
    indices: tuple[int, ...] | None = None
    reference: str | None = None
    # Width/attention options after the layers, in STUDENT_OPTIONS order: (("ffn", 768), ...).
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        """The value of one `STUDENT_OPTIONS` key, or `default` when the spec does not set it."""
        return dict(self.options).get(key, default)

    @property
    def name(self) -> str:
        """A short directory-safe name, e.g. `layers-3`, `layers-0-2-5`, `layers-3-ffn768-heads8`,
        `all-MiniLM-L6-v2`."""
        if self.reference is not None:
            return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.reference.rstrip("/")).name) or "student"
        base = ("layers-" + "-".join(str(i) for i in self.indices)) if self.indices is not None \
            else f"layers-{self.count}"
        extra = "".join(f"-{k}{re.sub(r'[^A-Za-z0-9.]+', '.', str(v))}" for k, v in self.options)
        return base + extra


def parse_student_spec(text: str) -> StudentSpec:
    """Parse `layers=3`, `layers=0,2,5` or a model reference; raise `ModelError` on a malformed one."""
    text = text.strip()
    match = _LAYERS.match(text)
    if match is None:
        if not text:
            raise ModelError("empty --student value: use layers=K, layers=i,j,k or a model reference")
        return StudentSpec(text=text, reference=text)
    parts = match.group(1).replace(" ", "").split(",")
    # The layer indices run up to the first `key=value` part; the options follow.
    first_option = next((i for i, p in enumerate(parts) if "=" in p), len(parts))
    options = _parse_options(text, parts[first_option:])
    try:
        values = [int(v) for v in parts[:first_option]]
    except ValueError:
        raise ModelError(f"bad student spec '{text}': expected layers=K or layers=i,j,k with integers") from None
    if not values:
        raise ModelError(f"bad student spec '{text}': layers= needs a count or indices, e.g. layers=3,ffn=768")
    if len(values) == 1:
        if values[0] < 1:
            raise ModelError(f"bad student spec '{text}': a student needs at least 1 layer (layers=1 or more)")
        return StudentSpec(text=text, count=values[0], options=options)
    if min(values) < 0 or len(set(values)) != len(values) or values != sorted(values):
        raise ModelError(f"bad student spec '{text}': layer indices must be distinct, ascending and >= 0")
    return StudentSpec(text=text, indices=tuple(values), options=options)


def _parse_options(text: str, parts: list[str]) -> tuple[tuple[str, Any], ...]:
    """`["ffn=768", "heads=8"]` -> (("ffn", 768), ("heads", 8)) in STUDENT_OPTIONS order; unknown,
    repeated or malformed keys raise `ModelError` naming the accepted ones."""
    found: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if key not in STUDENT_OPTIONS:
            accepted = ", ".join(f"{k}= ({v})" for k, v in STUDENT_OPTIONS.items())
            raise ModelError(f"bad student spec '{text}': unknown option '{key}'; after layers= it takes {accepted}")
        if key in found:
            raise ModelError(f"bad student spec '{text}': '{key}=' given twice; give it once")
        if not sep or not value:
            raise ModelError(f"bad student spec '{text}': '{key}=' needs a value ({STUDENT_OPTIONS[key]})")
        if key in _INT_OPTIONS:
            if not value.isdigit() or int(value) < 1:
                raise ModelError(f"bad student spec '{text}': {key}={value} must be a positive integer "
                                 f"({STUDENT_OPTIONS[key]})")
            found[key] = int(value)
        else:
            if key == "diff":  # its grammar lives with the conversion; checked here, before any model loads
                from edgekd.train.diff_attention import parse_diff

                parse_diff(value)
            found[key] = value
    return tuple((k, found[k]) for k in STUDENT_OPTIONS if k in found)


def evenly_spaced_layers(n_teacher: int, k: int) -> list[int]:
    """K of `n_teacher` layer indices, evenly spaced, including the first and the last."""
    if k == 1:
        return [n_teacher - 1]
    return [int(round(x)) for x in np.linspace(0, n_teacher - 1, k)]


def resolve_layers(spec: StudentSpec, n_teacher: int) -> list[int]:
    """The teacher layer indices a layer spec copies, checked against the teacher depth."""
    if spec.count is not None:
        # Every layer is a student only when options change it (layers=6,ffn=768 on a 6-layer teacher).
        if spec.count > n_teacher or (spec.count == n_teacher and not spec.options):
            raise ModelError(f"student spec '{spec.text}' asks for {spec.count} layers but the teacher has "
                             f"only {n_teacher}: use layers=1..{n_teacher - 1}, or layers={n_teacher} with "
                             "ffn=/heads=")
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

    from edgekd.train.diff_attention import diff_only_keys

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
    # A differential-attention teacher's extra weights: `diff_attention.convert_student` copies them.
    unexpected = sorted(set(unexpected) - set(diff_only_keys(unexpected)))
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        raise ModelError(f"layer copy of {type(teacher).__name__} left weights unmatched "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); use a model reference student")
    return student


def build_student(spec: StudentSpec, teacher: Checkpoint | Path,
                  labels: list[str]) -> tuple[Any, Any, list[int] | None]:
    """(student model, its tokenizer, copied teacher layer indices or None) for a spec; a layer spec
    copies from the teacher's loaded model (`Checkpoint.model`, loaded once per checkpoint)."""
    # diff= is applied here; ffn=/heads= by distill (pruning needs data); parse_student_spec refuses other keys.
    from edgekd.train.diff_attention import convert_student

    teacher = Checkpoint.open(teacher)
    if spec.reference is None:
        model = teacher.model()
        layers = resolve_layers(spec, model.config.num_hidden_layers)
        student = convert_student(spec, build_layer_student(model, layers), teacher, layers)
        return student, teacher.tokenizer(), layers
    from edgekd.train.teacher import load_base_model

    model, tokenizer, _ = load_base_model(spec.reference, labels)
    return convert_student(spec, model, teacher, None), tokenizer, None


def latency_p50_ms(checkpoint: Checkpoint | Path, texts: list[str], max_length: int, runs: int = 50) -> float:
    """Median batch-1 PyTorch CPU latency (ms) of the checkpoint's forward pass over real texts
    (tokenized beforehand, so only the model is timed; 5 warm-up calls). Moves the model to the CPU."""
    import time

    import torch

    checkpoint = Checkpoint.open(checkpoint)
    model, tokenizer = checkpoint.model(), checkpoint.tokenizer()
    model.to("cpu")
    encoded = [tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")
               for t in texts[: max(runs, 1)]]
    times = []
    with torch.inference_mode():
        for enc in encoded[:5]:
            model(**enc)
        for enc in encoded:
            start = time.perf_counter()
            model(**enc)
            times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


COMPARISON_COLUMNS = [("model", "model"), ("params", "params"), ("compression", "compression"),
                      ("accuracy", "accuracy"), ("f1_macro", "F1 macro"), ("agreement", "agreement"),
                      ("latency_p50_ms", "p50 ms (b=1, CPU)")]


def write_comparison(rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """`comparison.json`, `comparison.md` and `comparison.png` (accuracy / size / latency bars)
    for the teacher row followed by the student rows."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "comparison.json", "md": out / "comparison.md", "png": out / "comparison.png"}
    paths["json"].write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    lines = ["| " + " | ".join(title for _, title in COMPARISON_COLUMNS) + " |",
             "|" + "|".join("---" if k == "model" else "---:" for k, _ in COMPARISON_COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(k), k) for k, _ in COMPARISON_COLUMNS) + " |")
    paths["md"].write_text("\n".join(lines) + "\n")
    _comparison_chart(rows, paths["png"])
    return paths


def format_cell(value: Any, key: str = "") -> str:
    """A comparison-table cell: params in millions, compression/speedup as N.NNx, rates to 4 places."""
    if key in ("compression", "speedup") and isinstance(value, (int, float)):
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1.0 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value / 1e6:.2f}M" if value >= 100_000 else str(value)
    return "" if value is None else str(value)


def _comparison_chart(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [r["model"] for r in rows]
    panels = [("accuracy", "test accuracy"), ("params", "parameters (M)"), ("latency_p50_ms", "p50 ms, batch 1 CPU")]
    fig = Figure(figsize=(12, 0.5 * len(rows) + 2), dpi=110)
    FigureCanvasAgg(fig)
    for k, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        values = [float(r.get(key) or 0.0) / (1e6 if key == "params" else 1.0) for r in rows]
        ax.barh(range(len(rows)), values, color=["#888888"] + ["#3b7dd8"] * (len(rows) - 1))
        ax.set_yticks(range(len(rows)), names if k == 0 else [""] * len(rows))
        ax.invert_yaxis()
        ax.set_title(title)
        if key == "accuracy":
            ax.set_xlim(max(0.0, min(values) - 0.1), 1.0)
    fig.tight_layout()
    fig.savefig(path)
