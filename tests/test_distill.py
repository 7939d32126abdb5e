"""Distillation: the KD loss against a hand computation, the intermediate losses, and a tiny
end-to-end `edgekd distill` run (the trained tiny BERT as teacher) writing every output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts, write_dataset

from edgekd.cli import main


def test_kd_loss_equals_hand_computation() -> None:
    import torch

    from edgekd.train.distill import kd_loss

    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, 2.5]])
    y = np.array([1, 2])
    temperature, alpha = 2.0, 0.7

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_t, p_s = softmax(t / temperature), softmax(s / temperature)
    kl = float(np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1)))
    ce = float(np.mean([-math.log(softmax(s)[i, y[i]]) for i in range(2)]))
    expected = alpha * temperature**2 * kl + (1 - alpha) * ce

    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature, alpha)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # alpha = 0 is plain cross-entropy; identical logits give zero KL.
    assert float(kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), 2.0, 0.0)) == pytest.approx(ce)
    assert float(kd_loss(torch.tensor(s), torch.tensor(s), torch.tensor(y), 2.0, 1.0)) == pytest.approx(0.0, abs=1e-12)


def test_intermediate_losses_are_zero_on_identical_states_and_positive_otherwise() -> None:
    import torch

    from edgekd.train.distill import attention_kl, hidden_mse

    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    states = tuple(torch.randn(2, 4, 8) for _ in range(3))
    assert float(hidden_mse(states, states, [0, 1], mask, torch.nn.Identity())) == pytest.approx(0.0)
    other = tuple(s + 1.0 for s in states)  # every real token off by 1 in each of 8 dims -> MSE 1
    assert float(hidden_mse(states, other, [0, 1], mask, torch.nn.Identity())) == pytest.approx(1.0)
    attn = tuple(torch.softmax(torch.randn(2, 2, 4, 4), dim=-1) for _ in range(2))
    assert float(attention_kl(attn, attn, [0, 1], mask)) == pytest.approx(0.0, abs=1e-6)
    flipped = tuple(a.flip(-1) for a in attn)
    assert float(attention_kl(attn, flipped, [0, 1], mask)) > 0.01


def _checkpoint_logits(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    """logits [len(texts), num_labels] of a saved checkpoint, run with transformers directly (not
    through edgekd's inference), all texts in one padded batch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return model(**enc).logits.numpy()


def test_distill_cli_two_students_writes_all_outputs(trained_tiny_bert: Path, tmp_path: Path) -> None:
    # A trained teacher: the random tiny BERT predicts one class for every text, which would make
    # any agreement figure 0 or 1 whatever rows it compared.
    teacher = trained_tiny_bert
    data = write_dataset(tmp_path / "data", {"train": 96, "test": 48})
    out = tmp_path / "students"
    # A layer-copy student and a model-reference student (a checkpoint dir with the same tokenizer).
    argv = ["distill", "--teacher", str(teacher), "--data", str(data), "--student", "layers=1",
            "--student", str(teacher), "--out", str(out), "--epochs", "1", "--batch-size", "16",
            "--max-length", "32", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "--hidden-weight", "0.5", "--attention-weight", "0.5"]
    assert main(argv) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["teacher", "layers-1", teacher.name]
    assert rows[1]["params"] < rows[0]["params"] and rows[1]["compression"] > 1.0
    assert rows[2]["params"] == rows[0]["params"]  # the same architecture as the teacher: same size
    for name in ("comparison.md", "comparison.png"):
        assert (out / name).stat().st_size > 0
    for row in rows[1:]:
        student = Path(row["path"])
        metrics = json.loads((student / "metrics.json").read_text())
        assert metrics["accuracy"] == pytest.approx(row["accuracy"])
        dist = json.loads((student / "distillation.json").read_text())
        assert dist["spec"] == row["spec"] and dist["loss"]["alpha"] == 0.5 and dist["cache_hit"] is False
        meta = json.loads((student / "edgekd-model.json").read_text())
        assert meta["role"] == "student" and meta["max_length"] == 32 and meta["teacher"] == str(teacher)
        assert (student / "model.safetensors").is_file() and not (student / "checkpoints").exists()
        assert not (student / "training_args.bin").exists()
    # Agreement recomputed here: both checkpoints run again on the test split, top-1 vs top-1.
    texts, _ = read_texts("ag_news", "test", 48)
    teacher_logits = _checkpoint_logits(teacher, texts, 32)
    cached = [np.load(p) for p in (tmp_path / "cache").rglob("*.npy")
              if json.loads(p.with_suffix(".json").read_text())["split"] == "test"]
    assert len(cached) == 1  # the teacher's test logits the agreement was computed against, in text order
    np.testing.assert_allclose(cached[0], teacher_logits, rtol=0, atol=1e-5)
    assert len(set(teacher_logits.argmax(1).tolist())) > 1  # a teacher that predicts more than one class
    for row in rows[1:]:
        student_top1 = _checkpoint_logits(Path(row["path"]), texts, 32).argmax(1)
        agreement = float(np.mean(student_top1 == teacher_logits.argmax(1)))
        dist = json.loads((Path(row["path"]) / "distillation.json").read_text())
        assert row["agreement"] == pytest.approx(agreement, abs=1e-12), row["model"]
        assert dist["agreement_with_teacher"] == row["agreement"]
    assert "layers-1" in (out / "comparison.md").read_text()


def test_distill_no_teacher_single_student_and_cache_hit(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", {"train": 64, "test": 32})
    common = ["--teacher", str(tiny_bert), "--data", str(data), "--epochs", "1", "--max-length", "32",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["distill", *common, "--student", "layers=1", "--out", str(tmp_path / "a")]) == 0
    assert main(["distill", *common, "--student", "layers=1", "--no-teacher", "--out", str(tmp_path / "b")]) == 0
    first = json.loads((tmp_path / "a" / "distillation.json").read_text())
    plain = json.loads((tmp_path / "b" / "distillation.json").read_text())
    assert first["cache_hit"] is False and first["loss"]["use_teacher"] is True
    assert plain["loss"]["use_teacher"] is False and plain["loss"]["alpha"] == 0.0
    rows = json.loads((tmp_path / "b" / "comparison.json").read_text())["rows"]
    assert rows[0]["teacher_cache_hit"] is True  # second run over the same teacher + data
    # The saving is recorded: the hit only memory-maps what the miss computed with the teacher.
    missed = json.loads((tmp_path / "a" / "comparison.json").read_text())["rows"][0]["teacher_logits_s"]
    assert first["teacher_logits_s"] == missed and 0 <= rows[0]["teacher_logits_s"] < missed


@pytest.mark.parametrize("spec, message", [
    ("layers=5", "teacher has only 2"),
    ("layers=0,7", "[7]"),
    ("layers=0", "at least 1 layer"),
    ("layers=a", "integers"),
    ("/no/such/model-dir", "/no/such/model-dir"),
])
def test_bad_student_specs_fail_with_one_line(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              spec: str, message: str) -> None:
    argv = ["distill", "--teacher", str(tiny_bert), "--data", str(tmp_path), "--student", spec,
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd distill: error:") and message in err and "\n" not in err


def _sync_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    from edgekd.train.distill import DistillationTrainer

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # different initial weights and gradients on each rank
    holder = type("T", (), {})()
    holder.projection = torch.nn.Linear(3, 2)
    DistillationTrainer._sync_projection(holder, broadcast=True)
    for p in holder.projection.parameters():
        p.grad = torch.full_like(p, float(rank + 1))  # rank 0: 1, rank 1: 2 -> mean 1.5
    DistillationTrainer._sync_projection(holder)
    torch.save({k: v for k, v in holder.projection.state_dict().items()}
               | {"grad": holder.projection.weight.grad}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_projection_is_synced_across_ranks(tmp_path: Path) -> None:
    """The hidden-state projection lives outside DDP: rank 0's weights are broadcast and the
    gradients averaged by hand, so every rank trains the same projection."""
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_sync_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["weight"], r1["weight"]) and torch.equal(r0["bias"], r1["bias"])
    assert torch.allclose(r0["grad"], torch.full((2, 3), 1.5)) and torch.equal(r0["grad"], r1["grad"])


def test_train_and_distill_under_torchrun(tiny_bert: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2` on CPU runs one gloo data-parallel job (not two independent
    copies): only rank 0 evaluates, prints and writes; the teacher pass runs once (rank 0 fills the
    cache first, the other rank reads it)."""
    import os
    import subprocess
    import sys

    data = write_dataset(tmp_path / "data", {"train": 64, "test": 32})
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2",
                "-m", "edgekd"]
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*argv: str) -> str:
        proc = subprocess.run([*torchrun, *argv, *common], capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    out = run("train", "--model", str(tiny_bert), "--out", str(tmp_path / "teacher"))
    assert out.count("teacher checkpoint: ") == 1  # rank 0 only
    assert json.loads((tmp_path / "teacher" / "metrics.json").read_text())["n"] == 32
    out = run("distill", "--teacher", str(tiny_bert), "--student", "layers=1", "--out", str(tmp_path / "student"),
              "--cache-dir", str(tmp_path / "cache"), "--hidden-weight", "0.5")
    assert out.count("comparison: ") == 1
    rows = json.loads((tmp_path / "student" / "comparison.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["teacher", "layers-1"] and rows[0]["teacher_cache_hit"] is False
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3  # train, validation, test: once each
    assert (tmp_path / "student" / "model.safetensors").is_file()


def test_teacher_logits_reach_the_distillation_loss(tiny_bert: Path, tmp_path: Path) -> None:
    """The soft targets must survive the Trainer's data pipeline (by default it drops every feature
    key that is not a forward() argument, which would silently turn distillation into plain CE), and
    each example must carry the teacher's logits for THAT example (the cache rows in example order)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification

    from edgekd.data import DataSpec, load_splits
    from edgekd.train.cache import LogitCache
    from edgekd.train.common import TrainConfig
    from edgekd.train.distill import DistillationTrainer, DistillConfig, kd_loss
    from edgekd.train.infer import load_checkpoint
    from edgekd.train.teacher import build_trainer

    splits = load_splits(DataSpec(str(write_dataset(tmp_path / "data", {"train": 64, "test": 16}))), labels=list(AG_LABELS))
    model, tokenizer = load_checkpoint(tiny_bert)
    config = DistillConfig(train=TrainConfig(epochs=1, batch_size=8, max_length=32, progress=False), alpha=0.7)
    cache = LogitCache(tiny_bert, tmp_path / "cache")
    soft = {name: cache.logits(split.texts, splits.fingerprint, name, config.train.max_length)[0]
            for name, split in splits.items()}
    trainer = build_trainer(model, tokenizer, splits, tmp_path / "out", config.train, trainer_cls=DistillationTrainer,
                            train_logits=soft["train"], validation_logits=soft["validation"],
                            distill=config, teacher=None, layer_map=None)
    batch = next(iter(trainer.get_train_dataloader()))  # a shuffled batch: rows are not in file order
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
    # The teacher run again, outside the cache, on exactly the examples of this batch: [8, 4].
    teacher = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert)).eval()
    with torch.no_grad():
        own = teacher(**inputs).logits.numpy()
    atol = 1e-6  # same model, same tokens; only the padding of the batch differs (masked)
    assert batch["teacher_logits"].shape == (8, 4)
    np.testing.assert_allclose(batch["teacher_logits"].numpy(), own, rtol=0, atol=atol)
    # The check has power: any two examples of the batch differ by far more than its tolerance
    # (~3.6e-4 here), so a row paired with the wrong example (a shuffled or shifted cache) fails it.
    assert min(np.abs(own[i] - own[j]).max() for i in range(8) for j in range(i)) > 10 * atol
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        logits = model(**inputs).logits
    expected = kd_loss(logits, batch["teacher_logits"], batch["labels"], config.temperature, config.alpha,
                       trainer.class_weights)  # auto: the 64-row slice is imbalanced, so weighted
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert abs(float(loss) - float(F.cross_entropy(logits, batch["labels"]))) > 1e-3  # not plain CE
