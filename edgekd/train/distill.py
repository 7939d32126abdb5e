"""Knowledge distillation: a `Trainer` subclass whose loss is

    alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE_w(student, labels)

where CE_w is the class-weighted cross-entropy (`--class-weight`; the KL term is not weighted: the
teacher's soft targets carry its own class preferences, re-balanced when it was trained weighted),

with optional intermediate losses for same-tokenizer students: hidden-state MSE (through a
learned projection when widths differ) and attention-distribution KL. Soft targets are the
teacher's cached logits per example (`train.cache`), so student and teacher may tokenize
differently; the intermediate losses run the teacher online and need the same tokenizer.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.checkpoint import Checkpoint, write_card
from edgekd.errors import ModelError
from edgekd.train.common import (
    DistillConfig,
    count_parameters,
    cpu_only,
    cross_entropy,
    device_description,
    save_final,
    set_seed,
    write_json,
)
from edgekd.train.teacher import ClassWeightedTrainer

if TYPE_CHECKING:
    from edgekd.data import DataSpec, Splits
    from edgekd.train.students import StudentSpec


def kd_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float, alpha: float,
            class_weights: Any = None) -> Any:
    """alpha * T^2 * KL(teacher/T || student/T) (batch mean) + (1 - alpha) * cross-entropy, the
    cross-entropy weighted per class by `class_weights` [num_labels] when given (`common.cross_entropy`)."""
    import torch
    import torch.nn.functional as F

    # At least float32 even under bf16/fp16 autocast: the KL of near-equal distributions is small.
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s, t_logits, t = student_logits.to(dtype), teacher_logits.to(dtype), float(temperature)
    soft = F.kl_div(F.log_softmax(s / t, dim=-1), F.log_softmax(t_logits / t, dim=-1),
                    reduction="batchmean", log_target=True) * (t * t)
    hard = cross_entropy(s, labels, class_weights)
    return alpha * soft + (1.0 - alpha) * hard


def hidden_mse(student_states: Any, teacher_states: Any, layer_map: list[int], mask: Any, projection: Any) -> Any:
    """Mean over mapped layers of the token-masked MSE between projected student hidden states
    and teacher hidden states. states: tuples of [batch, seq, width] (index 0 = embeddings)."""
    pairs = [(0, 0)] + [(j + 1, i + 1) for j, i in enumerate(layer_map)]
    m = mask.unsqueeze(-1).float()  # [batch, seq, 1]
    total = 0.0
    for s, t in pairs:
        diff = (projection(student_states[s]) - teacher_states[t].detach()) ** 2
        total = total + (diff * m).sum() / (m.sum() * diff.shape[-1])
    return total / len(pairs)


def attention_kl(student_attn: Any, teacher_attn: Any, layer_map: list[int], mask: Any) -> Any:
    """Mean over mapped layers of KL(teacher || student) of attention rows, over real (non-pad)
    query positions. attn: tuples of [batch, heads, seq, seq]; heads must match."""
    import torch

    q = mask.float()[:, None, :, None]  # [batch, 1, seq(query), 1]
    total = 0.0
    for j, i in enumerate(layer_map):
        s, t = student_attn[j].clamp_min(1e-12), teacher_attn[i].detach().clamp_min(1e-12)
        kl = (t * (torch.log(t) - torch.log(s))).sum(-1, keepdim=True)  # [batch, heads, seq, 1]
        total = total + (kl * q).sum() / (q.sum() * s.shape[1])
    return total / len(layer_map)


class DistillationTrainer(ClassWeightedTrainer):
    """`Trainer` with the KD loss; `teacher_logits` come in each batch from the collator."""

    def __init__(self, *args: Any, distill: DistillConfig, teacher: Any = None,
                 layer_map: list[int] | None = None, **kwargs: Any) -> None:
        import torch

        super().__init__(*args, **kwargs)
        self.distill = distill
        self.teacher = teacher  # only for the intermediate losses
        self.layer_map = layer_map or []
        self.model_accepts_loss_kwargs = False
        self.projection: Any = torch.nn.Identity()
        if teacher is not None:
            teacher.eval().requires_grad_(False).to(self.args.device)
            ws, wt = self.model.config.hidden_size, teacher.config.hidden_size
            if distill.hidden_weight > 0 and ws != wt:
                self.projection = torch.nn.Linear(ws, wt).to(self.args.device)
                self._sync_projection(broadcast=True)

    def _sync_projection(self, broadcast: bool = False) -> None:
        """Keep the projection identical on every rank under torchrun: it lives outside the DDP-wrapped
        student, so DDP does not average its gradients. `broadcast` copies rank 0's initial weights;
        otherwise the gradients are averaged (after each micro-step: the accumulated part is already
        equal on every rank, so averaging the sum is averaging the new part)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        for p in self.projection.parameters():
            if broadcast:
                dist.broadcast(p.data, src=0)
            elif p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._sync_projection()
        return loss

    def create_optimizer(self) -> Any:
        """The Trainer's optimizer plus the hidden-state projection's parameters (if any)."""
        optimizer = super().create_optimizer()
        params = list(self.projection.parameters())
        if params:
            optimizer.add_param_group({"params": params, "weight_decay": 0.0})
        return optimizer

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """KD loss (plus intermediate losses while training) for one batch."""

        inputs = dict(inputs)
        teacher_logits = inputs.pop("teacher_logits", None)
        labels = inputs.pop("labels")
        cfg = self.distill
        online = self.teacher is not None and model.training
        want_h, want_a = online and cfg.hidden_weight > 0, online and cfg.attention_weight > 0
        outputs = model(**inputs, output_hidden_states=want_h, output_attentions=want_a)
        if teacher_logits is None or not cfg.use_teacher:
            loss = cross_entropy(outputs.logits, labels, self.class_weights)
        else:
            loss = kd_loss(outputs.logits, teacher_logits, labels, cfg.temperature, cfg.alpha, self.class_weights)
        if want_h or want_a:
            import torch

            with torch.no_grad():
                t_out = self.teacher(**inputs, output_hidden_states=want_h, output_attentions=want_a)
            mask = inputs["attention_mask"]
            if want_h:
                loss = loss + cfg.hidden_weight * hidden_mse(
                    outputs.hidden_states, t_out.hidden_states, self.layer_map, mask, self.projection)
            if want_a:
                loss = loss + cfg.attention_weight * attention_kl(
                    outputs.attentions, t_out.attentions, self.layer_map, mask)
        return (loss, outputs) if return_outputs else loss


def distill_student(spec: StudentSpec, teacher: Checkpoint | Path, splits: Splits, out: Path, config: DistillConfig,
                    soft: dict[str, Any], data_spec: DataSpec | None = None) -> dict[str, Any]:
    """Build the student of `spec`, train it against the teacher's soft targets and write the
    checkpoint, `metrics.json`, `distillation.json` and its card into `out`.

    `soft` holds `train` / `validation` / `test` teacher logits and `cache_hit`. Returns the
    student's comparison row (None on the other ranks under torchrun: only rank 0 evaluates and writes).
    """
    from edgekd.train.imbalance import best_epoch, validation_history
    from edgekd.train.students import build_student, evenly_spaced_layers
    from edgekd.train.teacher import build_trainer, decisions, finish_checkpoint, library_versions
    from edgekd.train.width import prune_width

    train, plan = config.train.resolved(splits.train.labels, list(splits.labels))
    config = dataclasses.replace(config, train=train)
    set_seed(config.train.seed)
    teacher = Checkpoint.open(teacher)
    student, tokenizer, layers = build_student(spec, teacher, list(splits.labels))
    from edgekd.models import resolve_model
    from edgekd.train.adapt import embedding_lr_for

    # the student's rows come from its teacher (already fine-tuned) or from the model it names
    source = teacher.path if spec.reference is None else resolve_model(spec.reference)
    embedding_lr, why = embedding_lr_for(config.train.lr, config.train.embedding_lr, source)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, embedding_lr=embedding_lr))
    # ffn=/heads=: prune the copied layers by importance on the training texts (None: no pruning).
    width = prune_width(spec, student, tokenizer, splits.train, config.train.max_length,
                        config.train.seed, config.attention_weight)
    online, layer_map = _intermediate_teacher(config, teacher, student, tokenizer, layers)
    if online is not None and layers is None:
        layer_map = evenly_spaced_layers(online.config.num_hidden_layers, student.config.num_hidden_layers)
    use = config.use_teacher
    trainer = build_trainer(
        student, tokenizer, splits, Path(out), config.train, trainer_cls=DistillationTrainer,
        train_logits=soft["train"] if use else None, validation_logits=soft["validation"] if use else None,
        distill=config, teacher=online, layer_map=layer_map, class_weights=plan.weights)
    from edgekd.train import diff_attention as diff
    from edgekd.train.adapt import inherit as inherit_adaptation

    diff.attach_ramp(trainer)  # diff= layers (or ones inherited from the teacher below ramp 1)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    save_final(trainer, tokenizer, Path(out))
    if not trainer.is_world_process_zero():  # under torchrun only rank 0 evaluates and writes
        return None
    metrics, student_logits = finish_checkpoint(trainer.model, tokenizer, splits, Path(out), config.train.max_length)
    agreement = float((student_logits.argmax(-1) == np.asarray(soft["test"]).argmax(-1)).mean())
    settings = {"temperature": config.temperature, "alpha": config.alpha if use else 0.0,
                "hidden_weight": config.hidden_weight, "attention_weight": config.attention_weight,
                "use_teacher": use, "training": dataclasses.asdict(config.train)}
    write_json(Path(out) / "distillation.json", {
        "teacher": str(teacher.path), "spec": spec.text, "copied_layers": layers, "loss": settings,
        "cache_hit": soft["cache_hit"] if use else None, "teacher_logits_s": soft.get("teacher_logits_s"),
        "wall_time_s": round(wall, 2),
        "device": device_description(), "agreement_with_teacher": agreement})
    write_card(Path(out), {
        "role": "student", "teacher": str(teacher.path), "max_length": config.train.max_length,
        "width_pruning": width,
        "labels": list(splits.labels), "data": data_spec.to_dict() if data_spec is not None else None,
        "dataset_fingerprint": splits.fingerprint, "base_model": spec.text, "training": dataclasses.asdict(config.train),
        "decisions": decisions(plan, embedding_lr, why), "select_metric": config.train.select_metric,
        "best_validation": best_epoch(trainer.state.log_history, config.train.select_metric),
        "validation_history": validation_history(trainer.state.log_history),
        "epochs_run": trainer.state.epoch, "test_accuracy": metrics["accuracy"], "test_f1_macro": metrics["f1_macro"],
        "wall_time_s": round(wall, 2), "device": device_description(), "versions": library_versions()})
    diff.record(Path(out), trainer.model, spec.option("diff"))
    inherit_adaptation(Path(out), teacher)  # the student has the teacher's (adapted) vocabulary
    return {"model": spec.name + ("" if use else " (no teacher)"), "spec": spec.text, "path": str(out),
            "distilled": use, "params": count_parameters(trainer.model), "accuracy": metrics["accuracy"],
            "f1_macro": metrics["f1_macro"], "f1_weighted": metrics["f1_weighted"],
            "agreement": agreement, "wall_time_s": round(wall, 2)}


def _intermediate_teacher(config: DistillConfig, teacher: Checkpoint, student: Any, tokenizer: Any,
                          layers: list[int] | None) -> tuple[Any, list[int] | None]:
    """The teacher's model (eager attention) when intermediate losses are on, else (None, layers)."""
    if config.hidden_weight <= 0 and config.attention_weight <= 0:
        return None, layers
    model = teacher.model()
    if teacher.tokenizer().get_vocab() != tokenizer.get_vocab():
        raise ModelError("--hidden-weight/--attention-weight need a student with the teacher's tokenizer; "
                         "use a layers=K student or set both weights to 0")
    if student.config.num_hidden_layers > model.config.num_hidden_layers:
        raise ModelError("intermediate losses need a student no deeper than the teacher; set the weights to 0")
    if config.attention_weight > 0:
        if student.config.num_attention_heads != model.config.num_attention_heads:
            raise ModelError("--attention-weight needs the same number of attention heads in student and "
                             "teacher; set it to 0 for this student")
        model.set_attn_implementation("eager")
        student.set_attn_implementation("eager")
    return model, layers


def distill_many(teacher: Checkpoint | Path, splits: Splits, specs: list[StudentSpec], out: Path, config: DistillConfig,
                 cache_dir: Path | None = None, compare_no_teacher: bool = False,
                 data_spec: DataSpec | None = None) -> list[dict[str, Any]]:
    """Distill every student spec, then write the comparison (teacher row first) into `out`. The
    teacher is opened once (a path becomes one `Checkpoint`) and its model loaded once for all students.

    One spec writes its checkpoint into `out` itself; several write `out/<spec name>/`.
    `compare_no_teacher` also trains each student without the teacher's soft targets.
    """
    from accelerate import PartialState

    from edgekd.metrics import evaluate_logits
    from edgekd.train.cache import LogitCache
    from edgekd.train.students import latency_p50_ms, write_comparison

    teacher = Checkpoint.open(teacher)
    max_length = config.train.max_length
    cache = LogitCache(teacher, cache_dir)  # a miss runs the one loaded teacher model
    soft: dict[str, Any] = {}
    hits = []
    started = time.perf_counter()
    state = PartialState(cpu=cpu_only())  # under torchrun: rank 0 fills the cache, the other ranks read it
    with state.main_process_first():
        for name, split in splits.items():
            soft[name], hit = cache.logits(split.texts, splits.fingerprint, name, max_length)
            hits.append(hit)
    cache.release()
    soft["cache_hit"] = all(hits)
    # What the cache saves: the teacher pass over every split on a miss, a memory-map on a hit.
    soft["teacher_logits_s"] = round(time.perf_counter() - started, 2)
    teacher_metrics = evaluate_logits(np.asarray(soft["test"]), splits.test.labels, list(splits.labels))
    teacher_params = count_parameters(teacher.model())
    timing_texts = splits.test.texts
    main = state.is_main_process
    rows = [{"model": "teacher", "spec": str(teacher.path), "path": str(teacher.path), "distilled": None,
             "params": teacher_params, "compression": 1.0, "accuracy": teacher_metrics["accuracy"],
             "f1_macro": teacher_metrics["f1_macro"], "f1_weighted": teacher_metrics["f1_weighted"],
             "agreement": 1.0, "latency_p50_ms": latency_p50_ms(teacher, timing_texts, max_length) if main else None}]
    runs = [(s, use) for s in specs for use in ([True, False] if compare_no_teacher else [config.use_teacher])]
    for spec, use in runs:
        target = Path(out) if len(runs) == 1 else Path(out) / (spec.name + ("" if use else "-no-teacher"))
        row = distill_student(spec, teacher, splits, target, dataclasses.replace(config, use_teacher=use), soft,
                              data_spec)
        if row is None:  # not rank 0
            continue
        row["compression"] = teacher_params / row["params"]
        row["latency_p50_ms"] = latency_p50_ms(target, timing_texts, max_length)
        row["speedup"] = rows[0]["latency_p50_ms"] / row["latency_p50_ms"]
        rows.append(row)
    if not main:
        return []
    for row in rows:
        row["teacher_cache_hit"] = soft["cache_hit"]
        row["teacher_logits_s"] = soft["teacher_logits_s"]
    write_comparison(rows, Path(out))
    return rows
