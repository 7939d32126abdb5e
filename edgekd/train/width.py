"""Width pruning of a student: keep the `heads=K` attention heads and `ffn=N` FFN neurons per layer
that matter most on training data, drop the rest, keep every other weight.

Importance is first-order Taylor (Michel et al. 2019, "Are Sixteen Heads Really Better than One?";
TextPruner): a mask of ones multiplies each head's output and each FFN neuron's activation, and a
unit's score is the size of the loss gradient with respect to its mask,

    score(unit) = sum over batches of | dL(batch) / d mask(unit) |,   L = summed cross-entropy,

which for an FFN neuron is |sum over tokens of activation x gradient|. With batch size 1 this is
Michel's expectation of |dL/dxi| over examples. The selection is uniform (the same K heads and N
neurons counts in every layer, the top-scored of each layer), so the pruned model is a standard
checkpoint: `config.intermediate_size = N` and `config.pruned_heads` (Hugging Face re-prunes the
heads when it builds the model, so `from_pretrained` loads it and every exporter sees plain Linear
layers of the new sizes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.checkpoint import Checkpoint
from edgekd.errors import ModelError, RecipeError

if TYPE_CHECKING:
    from edgekd.data import Split
    from edgekd.train.students import StudentSpec


# The spec keys this module applies (edgekd/train/students.py parses them).
WIDTH_OPTIONS = ("ffn", "heads")
# Importance is measured on a seeded sample of this many training texts, in batches of this size.
IMPORTANCE_TEXTS = 2048
IMPORTANCE_BATCH = 32


@dataclass(frozen=True)
class Units:
    """The prunable parts of one encoder layer (BERT family: BERT, RoBERTa, MiniLM, MPNet-style layers)."""

    context_out: Any  # Linear whose input is the heads' concatenated context: [batch, seq, heads * head_size]
    heads: int
    head_size: int
    ffn_in: Any  # Linear hidden -> FFN (its output rows are the FFN neurons)
    ffn_out: Any  # Linear FFN -> hidden (its input is the activation: [batch, seq, ffn])


def wants_width(spec: StudentSpec) -> bool:
    """Whether a student spec asks for width pruning."""
    return any(spec.option(k) is not None for k in WIDTH_OPTIONS)


def layer_units(model: Any) -> list[Units]:
    """The prunable parts of every encoder layer; `ModelError` for an architecture without them."""
    from edgekd.train.students import encoder_layer_path

    layers = model.get_submodule(encoder_layer_path(model))
    units = []
    for layer in layers:
        try:
            attention = layer.attention
            units.append(Units(attention.output.dense, attention.self.num_attention_heads,
                               attention.self.attention_head_size, layer.intermediate.dense, layer.output.dense))
        except AttributeError:
            raise ModelError(f"width pruning (ffn=, heads=) supports BERT-family encoders (attention.self, "
                             f"intermediate.dense, output.dense); {type(model).__name__} has another layout: "
                             "use layers=K without ffn=/heads=") from None
    return units


def check_width(spec: StudentSpec, config: Any, attention_weight: float = 0.0) -> None:
    """Refuse, before any data loads, `ffn=`/`heads=` values the teacher cannot give."""
    heads, ffn = spec.option("heads"), spec.option("ffn")
    have_heads = config.num_attention_heads - max((len(v) for v in (config.pruned_heads or {}).values()), default=0)
    if heads is not None and heads > have_heads:
        raise ModelError(f"student spec '{spec.text}': heads={heads} but the teacher has {have_heads} heads per "
                         f"layer; use heads=1..{have_heads}")
    if ffn is not None and ffn > config.intermediate_size:
        raise ModelError(f"student spec '{spec.text}': ffn={ffn} but the teacher's FFN has {config.intermediate_size} "
                         f"neurons per layer; use ffn=1..{config.intermediate_size}")
    if heads is not None and heads < have_heads and attention_weight > 0:
        raise RecipeError(f"student spec '{spec.text}' prunes heads, so its attention maps cannot be matched to "
                          "the teacher's: set --attention-weight 0 for it")


def check_teacher_width(spec: StudentSpec, teacher: Checkpoint | Path, attention_weight: float = 0.0) -> None:
    """`check_width` against a teacher checkpoint's config (read only when the spec asks for pruning)."""
    if wants_width(spec):
        check_width(spec, Checkpoint.open(teacher).config, attention_weight)


@contextmanager
def unit_masks(model: Any, head_masks: list[Any], ffn_masks: list[Any]) -> Iterator[None]:
    """Within the block, layer l's head h output is multiplied by `head_masks[l][h]` and its FFN
    neuron j activation by `ffn_masks[l][j]` (1-D tensors; ones with grad to score, zeros to drop)."""
    handles = []
    for unit, hm, fm in zip(layer_units(model), head_masks, ffn_masks, strict=True):
        def heads_hook(module: Any, args: tuple, unit: Units = unit, hm: Any = hm) -> tuple:
            context = args[0]  # [batch, seq, heads * head_size]
            return (context * hm.to(context.dtype).repeat_interleave(unit.head_size),) + args[1:]

        def ffn_hook(module: Any, args: tuple, fm: Any = fm) -> tuple:
            return (args[0] * fm.to(args[0].dtype),) + args[1:]  # activation: [batch, seq, ffn]

        handles.append(unit.context_out.register_forward_pre_hook(heads_hook))
        handles.append(unit.ffn_out.register_forward_pre_hook(ffn_hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def importance(model: Any, tokenizer: Any, texts: list[str], labels: np.ndarray, max_length: int,
               batch_size: int = IMPORTANCE_BATCH) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(head scores per layer [heads], FFN neuron scores per layer [ffn]) on `texts` with their label
    ids, as the module docstring defines them. The model is run in eval mode (no dropout) and left
    with no gradients."""
    import torch
    import torch.nn.functional as F

    units = layer_units(model)
    dtype = next(model.parameters()).dtype
    head_masks = [torch.ones(u.heads, dtype=dtype, requires_grad=True) for u in units]
    ffn_masks = [torch.ones(u.ffn_out.in_features, dtype=dtype, requires_grad=True) for u in units]
    head_scores = [np.zeros(u.heads) for u in units]
    ffn_scores = [np.zeros(u.ffn_out.in_features) for u in units]
    was_training = model.training
    model.eval()
    try:
        with unit_masks(model, head_masks, ffn_masks):
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(list(texts[i : i + batch_size]), truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt")
                y = torch.as_tensor(np.asarray(labels[i : i + batch_size]), dtype=torch.long)
                loss = F.cross_entropy(model(**enc).logits, y, reduction="sum")
                grads = torch.autograd.grad(loss, head_masks + ffn_masks)
                for layer in range(len(units)):
                    head_scores[layer] += grads[layer].abs().double().numpy()
                    ffn_scores[layer] += grads[len(units) + layer].abs().double().numpy()
    finally:
        model.train(was_training)
    return head_scores, ffn_scores


def top_units(scores: list[np.ndarray], keep: int | None) -> list[list[int]]:
    """Per layer, the indices of the `keep` highest scores in ascending index order (all when None);
    ties go to the lower index."""
    out = []
    for s in scores:
        k = len(s) if keep is None else min(keep, len(s))
        out.append(sorted(np.argsort(-s, kind="stable")[:k].tolist()))
    return out


def prune(model: Any, keep_heads: list[list[int]], keep_ffn: list[list[int]]) -> Any:
    """Remove every head and FFN neuron not kept (indices into the layer as it is now), in place;
    updates `config.pruned_heads` and `config.intermediate_size` so the checkpoint reloads."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    from edgekd.train.students import encoder_layer_path

    sizes = {len(k) for k in keep_ffn}
    if len(sizes) != 1:
        raise ModelError(f"width pruning keeps the same FFN size in every layer (config.intermediate_size); got {sizes}")
    units = layer_units(model)
    dtype = next(model.parameters()).dtype
    # Head indices in config.pruned_heads are the layer's original ones: map through earlier pruning.
    drop = {}
    for layer, (unit, kept) in enumerate(zip(units, keep_heads, strict=True)):
        gone = set(model.config.pruned_heads.get(layer, []))
        alive = [h for h in range(unit.heads + len(gone)) if h not in gone]
        drop[layer] = [alive[h] for h in range(unit.heads) if h not in kept]
    if any(drop.values()):
        model.prune_heads({k: v for k, v in drop.items() if v})
    layers = model.get_submodule(encoder_layer_path(model))
    for layer, kept in zip(layers, keep_ffn, strict=True):
        index = torch.as_tensor(kept, dtype=torch.long)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
    model.config.intermediate_size = sizes.pop()
    # transformers' prune_linear_layer builds the new Linear in the default dtype: back to the model's.
    return model.to(dtype)


def prune_width(spec: StudentSpec, model: Any, tokenizer: Any, train: Split, max_length: int, seed: int = 0,
                attention_weight: float = 0.0) -> dict | None:
    """Score the units of `model` on a seeded sample of the training split (`train.texts`,
    `train.labels` as the model's label ids), keep the top `heads=`/`ffn=` per layer and prune the
    rest in place. Returns the model card's `width_pruning` record (None when the spec asks for none)."""
    if not wants_width(spec):
        return None
    check_width(spec, model.config, attention_weight)
    rng = np.random.default_rng(seed)
    n = min(IMPORTANCE_TEXTS, len(train.texts))
    rows = np.sort(rng.choice(len(train.texts), size=n, replace=False))
    texts, labels = [train.texts[i] for i in rows], np.asarray(train.labels)[rows]
    head_scores, ffn_scores = importance(model, tokenizer, texts, labels, max_length)
    keep_heads, keep_ffn = top_units(head_scores, spec.option("heads")), top_units(ffn_scores, spec.option("ffn"))
    units = layer_units(model)
    before = {"heads": [u.heads for u in units], "ffn": [u.ffn_out.in_features for u in units]}
    prune(model, keep_heads, keep_ffn)
    return {
        "method": "first-order Taylor: sum over batches of |dL/d mask| (Michel et al. 2019), summed cross-entropy",
        "data": {"split": "train", "texts": n, "seed": seed, "batch_size": IMPORTANCE_BATCH, "max_length": max_length},
        "heads": spec.option("heads"), "ffn": spec.option("ffn"), "before": before,
        "kept_heads": keep_heads, "kept_ffn": keep_ffn,
        "head_scores": [np.round(s, 6).tolist() for s in head_scores],
        # Share of each layer's total score the kept units hold (1.0 = nothing of weight dropped).
        "kept_score_share": {"heads": _kept_share(head_scores, keep_heads), "ffn": _kept_share(ffn_scores, keep_ffn)},
        "pruned_heads": {str(k): sorted(v) for k, v in model.config.pruned_heads.items()},
    }


def _kept_share(scores: list[np.ndarray], kept: list[list[int]]) -> list[float]:
    return [round(float(s[k].sum() / max(s.sum(), 1e-30)), 4) for s, k in zip(scores, kept, strict=True)]
