"""Small, imbalanced data (issue 19): does the default (`--class-weight auto`, which is balanced on these
data, with selection on macro F1 and the schedule decided from the training rows) beat `--class-weight
none`? On arabic_news_ant (title + text; natural imbalance, largest/smallest class 9.2) and an imbalanced
AG News sample (2,000 / 600 / 200 / 60 training rows per class, test set as is), two seeds each: the
TF-IDF baseline, the MiniLM teacher (on arabic_news_ant with a vocabulary adapted to the training texts,
`Setting.arabic_vocab`) and its distilled 3-layer student, each class-weight setting trained end to end (the
student distils the teacher of the same setting). EDGEKD_BENCH_IMBALANCE_DATASETS=<name,...> runs only those
datasets; the others' rows are carried from an earlier results file of the same setting (`carry`). Per model:
accuracy, macro F1, the worst class's F1. Also the proxy sweep behind the `auto` threshold
(`edgekd.train.imbalance.IMBALANCE_RATIO`): TF-IDF + LR with class_weight None vs balanced on AG News at
largest/smallest ratios 1 to 33.

`python -m benchmarks imbalance` (2 CPU cores: ~15 h, see the comment above FULL);
`EDGEKD_BENCH_IMBALANCE=slice python -m benchmarks imbalance` runs the stated training slice (SLICE: the
whole AG News sample, the first 2,400 arabic_news_ant training rows, 3 epochs for every model, ~2.5 h) and
`EDGEKD_BENCH_IMBALANCE=smoke` the same steps on tiny slices, each into its own cache folder. Writes
results/imbalance-<device-id>.json and the `imbalance` section of RESULTS.md (smoke: only the cache folder).
`python -m benchmarks.imbalance` publishes what the setting's cache holds so far without running anything
(a run stopped part way, or one still going in another checkout), marked partial. Each step is a typed
stage config (`benchmarks.steps`: `train`, `distill`, `baseline`) run and cached by edgekd's one step runner;
a step counts as measured when its stamp and its metrics.json exist.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.steps import (
    BASE,
    CACHE,
    DATA,
    Step,
    adapt_vocab,
    baseline,
    command,
    data,
    distill,
    finished,
    out_dir,
    read_json,
    run_step,
    step,
    train,
)
from edgekd.data import DataSpec

SECTION = "imbalance"
# The AG News sample's training rows per class (the issue's), largest to smallest.
AG_SAMPLE = {"World": 2000, "Sports": 600, "Business": 200, "Sci/Tech": 60}
WEIGHTS = ("default", "none")  # no flag (auto) vs --class-weight none


@dataclass(frozen=True)
class Setting:
    name: str
    seeds: tuple[int, ...]
    scale: float  # share of the AG sample's rows per class (smoke: a slice)
    arabic_train_rows: int | None  # None: the whole training split; else its first rows (and test_rows)
    test_rows: int | None  # None: the whole test split
    epochs: str | None  # None: the default (decided from the training rows)
    sweep_ratios: tuple[float, ...]
    # arabic_news_ant's teachers start from MiniLM with a vocabulary of this many tokens trained on the
    # training rows (`edgekd adapt-vocab`, as `edgekd train`'s vocabulary-fit warning tells a user to do):
    # with the English vocabulary MiniLM reads Arabic letter by letter and stays near the majority class
    # (the English-vocabulary rows are in results/imbalance-linux-x86_64-amd-epyc-edd1ba49.json).
    arabic_vocab: int = 16000


# Wall time on 2 quiet CPU cores (MiniLM-L6 ~50 ms per training row at 64 tokens, ~2x at 128; AG News's
# measured epoch): the AG sample's teacher plans 12 epochs of 2,574 rows (<= ~30 min with its 7,600-text
# test pass, less when early stopping ends it), its 3-layer student ~20 min; arabic_news_ant (22k rows after
# the validation carve, 3 epochs at 128 tokens) ~1.9 h per teacher and ~1.1 h per student. x 2 settings x
# 2 seeds: ~15 h in all, ~12 h of it arabic_news_ant. On one recent GPU: about an hour.
FULL = Setting("full", (42, 43), 1.0, None, None, None, (1, 1.5, 2, 3, 4, 6, 10, 20, 33))
# The stated training slice for a 2-core session: the AG sample as the issue gives it, the first 2,400
# arabic_news_ant training rows (file order; class shares as the whole split's, largest/smallest 10.4) with
# the whole test split, and 3 epochs for every model instead of the schedule from the rows (13-15 epochs
# here), so the comparison is class weight + selection metric at one fixed budget.
SLICE = Setting("slice", (42, 43), 1.0, 2400, None, "3", (1, 1.5, 2, 3, 4, 6, 10, 20, 33), arabic_vocab=8000)
SMOKE = Setting("smoke", (42,), 0.05, 150, 60, "1", (1, 3, 10), arabic_vocab=1000)
SETTINGS = {s.name: s for s in (FULL, SLICE, SMOKE)}


def setting() -> Setting:
    """FULL, or the setting named by EDGEKD_BENCH_IMBALANCE (slice, smoke)."""
    name = os.environ.get("EDGEKD_BENCH_IMBALANCE", "") or "full"
    if name not in SETTINGS:
        raise SystemExit(f"EDGEKD_BENCH_IMBALANCE={name!r} is unknown; use one of {', '.join(SETTINGS)}")
    return SETTINGS[name]


def folder(s: Setting) -> Path:
    return CACHE / ("imbalance" + ("" if s.name == "full" else f"-{s.name}"))


def _rows(path: Path, text_columns: list[str]) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return [(" ".join(r[c] for c in text_columns), r["label"]) for r in csv.DictReader(f)]


def _write(root: Path, split: str, rows: list[tuple[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])


def datasets(s: Setting) -> dict[str, dict[str, Any]]:
    """name -> {"data": (path, text columns), "max_length", "vocab_size"} (vocab_size None: MiniLM's own).
    The AG News sample is written once into the cache folder (the first rows of each class in file order, the
    test split as is or its first rows in smoke)."""
    ag = folder(s) / "data" / "ag_news_imbalanced"
    if not (ag / "test.csv").is_file():
        quota = {k: max(2, round(v * s.scale)) for k, v in AG_SAMPLE.items()}
        train = []
        for text, label in _rows(DATA / "ag_news" / "train.csv.gz", ["text"]):
            if quota.get(label, 0) > 0:
                quota[label] -= 1
                train.append((text, label))
        test = _rows(DATA / "ag_news" / "test.csv.gz", ["text"])
        _write(ag, "train", train)
        _write(ag, "test", test[: s.test_rows] if s.test_rows else test)
    arabic: tuple[Path, tuple[str, ...]] = (DATA / "arabic_news_ant", ("title", "text"))
    if s.arabic_train_rows:  # smoke: the first rows of each split, title and text joined
        sliced = folder(s) / "data" / "arabic_news_ant"
        if not (sliced / "test.csv").is_file():
            for split, n in (("train", s.arabic_train_rows), ("test", s.test_rows)):
                _write(sliced, split, _rows(DATA / "arabic_news_ant" / f"{split}.csv.gz", ["title", "text"])[:n])
        arabic = (sliced, ("text",))
    return {"ag_news_imbalanced": {"data": (ag, ("text",)), "max_length": 64, "vocab_size": None},
            "arabic_news_ant": {"data": arabic, "max_length": 128, "vocab_size": s.arabic_vocab}}


def chosen(names: list[str]) -> list[str]:
    """The datasets EDGEKD_BENCH_IMBALANCE_DATASETS (a comma list) names, or all of them: a run on one
    device can redo one dataset while the others' rows come from an earlier device's results file."""
    wanted = [n for n in os.environ.get("EDGEKD_BENCH_IMBALANCE_DATASETS", "").split(",") if n]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise SystemExit(f"EDGEKD_BENCH_IMBALANCE_DATASETS: unknown {', '.join(unknown)}; use {', '.join(names)}")
    return wanted or names


def steps(s: Setting) -> dict[str, Step]:
    """Every step of the chosen datasets, keyed "<dataset> baseline|adapt <seed>" / "<dataset> teacher|student
    <weight> <seed>" (adapt: the vocabulary the dataset's teachers start from, when it has one)."""
    out: dict[str, Step] = {}
    epochs = {"epochs": s.epochs} if s.epochs else {}  # None: the schedule from the training rows
    every = datasets(s)
    made: dict[tuple[str, int], tuple[DataSpec, Path, str, list[Step]]] = {}
    for name in chosen(list(every)):
        d = every[name]
        path, columns = d["data"]
        for seed in s.seeds:
            c = folder(s) / name / f"seed{seed}"
            spec = data(path, columns, seed=seed)
            out[f"{name} baseline {seed}"] = step(baseline(spec, c / "baseline"), c / "baseline")
            model, upstream = BASE, []
            if d["vocab_size"]:  # per seed: the seed carves the validation rows, so the training texts differ
                base = c / f"base-vocab{d['vocab_size']}"
                out[f"{name} adapt {seed}"] = step(adapt_vocab(BASE, spec, d["vocab_size"], base), base)
                model, upstream = str(base), [out[f"{name} adapt {seed}"]]
            made[name, seed] = spec, c, model, upstream
    # The default's models of every seed before any `none` one: a run stopped part way has the target's.
    for weight in WEIGHTS:
        flag = {} if weight == "default" else {"class_weight": weight}  # default: TrainConfig's auto
        for (name, seed), (spec, c, model, upstream) in made.items():
            teacher_dir, student_dir = c / f"teacher-{weight}", c / f"student-{weight}"
            teacher = out[f"{name} teacher {weight} {seed}"] = step(
                train(spec, teacher_dir, model=model, max_length=every[name]["max_length"], **flag, **epochs),
                teacher_dir, after=upstream)
            # The student distils the teacher of the same setting, at the teacher's max_length.
            out[f"{name} student {weight} {seed}"] = step(
                distill(teacher_dir, spec, ["layers=3"], student_dir, **flag, **epochs), student_dir, after=[teacher])
    return out


def scores(model_dir: Path) -> dict[str, Any]:
    """accuracy, macro F1 and the worst class (test split) of a trained model, plus its card's decisions."""
    m = read_json(model_dir / "metrics.json")
    worst = min(m["per_class"].items(), key=lambda kv: kv[1]["f1"])
    row = {"accuracy": round(m["accuracy"], 4), "f1_macro": round(m["f1_macro"], 4),
           "worst_class": worst[0], "worst_f1": round(worst[1]["f1"], 4),
           "zero_f1_classes": [k for k, v in m["per_class"].items() if v["f1"] == 0]}
    card = model_dir / "edgekd-model.json"
    if card.is_file():
        c = read_json(card)
        d = c.get("decisions") or {}
        row |= {"class_weight_used": d.get("class_weight"), "select_metric": d.get("select_metric"),
                "epochs_planned": d.get("epochs"), "epochs_run": c.get("epochs_run"),
                "best_epoch": (c.get("best_validation") or {}).get("epoch"), "imbalance_ratio": d.get("imbalance_ratio")}
    return row


def threshold_sweep(s: Setting) -> list[dict[str, Any]]:
    """The proxy behind IMBALANCE_RATIO: TF-IDF + LR (the baseline's settings, one BLAS thread) with
    class_weight None vs balanced on AG News, geometric class sizes from 2,000 rows (x scale) down to
    2,000 / ratio; macro F1 and worst-class F1 on the whole test set and on a test sample with the
    training class shares; one row per (ratio, seed)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from threadpoolctl import threadpool_limits

    from edgekd.train.baseline import CLASSIFIER_SETTINGS, VECTORIZER_SETTINGS

    train = _rows(DATA / "ag_news" / "train.csv.gz", ["text"])
    test = _rows(DATA / "ag_news" / "test.csv.gz", ["text"])[: s.test_rows * 10 if s.test_rows else None]
    labels = sorted({lab for _, lab in train})
    vec_settings = dict(VECTORIZER_SETTINGS, ngram_range=tuple(VECTORIZER_SETTINGS["ngram_range"]))
    rows = []
    for ratio in s.sweep_ratios:
        for seed in s.seeds:
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(labels))
            pick, pick_test = [], []
            for k, c in enumerate(order):
                share = ratio ** (-k / (len(labels) - 1))
                pool = [i for i, (_, lab) in enumerate(train) if lab == labels[c]]
                pick += list(rng.choice(pool, max(2, round(2000 * s.scale * share)), replace=False))
                tpool = [i for i, (_, lab) in enumerate(test) if lab == labels[c]]
                pick_test += list(rng.choice(tpool, max(1, round(len(tpool) * share)), replace=False))
            vec = TfidfVectorizer(**vec_settings)
            x = vec.fit_transform([train[i][0] for i in pick])
            y = [train[i][1] for i in pick]
            row: dict[str, Any] = {"ratio": ratio, "seed": seed, "train_rows": len(pick)}
            for weight in (None, "balanced"):
                with threadpool_limits(1):
                    clf = LogisticRegression(class_weight=weight, **CLASSIFIER_SETTINGS).fit(x, y)
                for test_name, idx in (("balanced_test", range(len(test))), ("same_shares_test", pick_test)):
                    truth = [test[i][1] for i in idx]
                    pred = clf.predict(vec.transform([test[i][0] for i in idx]))
                    f1 = f1_score(truth, pred, labels=labels, average=None, zero_division=0)
                    row[f"{weight or 'none'} {test_name}"] = {
                        "accuracy": round(float(accuracy_score(truth, pred)), 4),
                        "f1_macro": round(float(f1.mean()), 4), "worst_f1": round(float(f1.min()), 4)}
            rows.append(row)
    return rows


def study(log: Any, run: bool = True) -> dict[str, Any]:
    """Run every step (cached) and score it; `run=False`: score only the steps whose output the cache
    already holds (the result is marked partial when any is missing)."""
    s = setting()
    log(f"imbalance ({s.name}): TF-IDF + LR threshold sweep")
    result: dict[str, Any] = {"setting": s.name, "seeds": list(s.seeds), "sweep": threshold_sweep(s), "models": []}
    commands, missing = {}, []
    planned = steps(s)
    for name, st in planned.items():
        if name.split()[1] == "adapt":  # the vocabulary the teachers start from: nothing to score
            if run:
                run_step(st, log)
            if run or finished(st) is not None:
                commands[name] = command(st)
            else:
                missing.append(name)
            continue
        wall = run_step(st, log)["wall_time_s"] if run else finished_wall_time(st)
        if wall is None:
            missing.append(name)
            continue
        commands[name] = command(st)
        dataset, kind, *rest = name.split()
        result["models"].append({"dataset": dataset, "model": kind, "class_weight": rest[0] if len(rest) == 2 else "-",
                                 "seed": int(rest[-1]), **scores(out_dir(st)), "wall_time_s": wall})
    result["carried"] = carry(s, set(datasets(s)) - {n.split()[0] for n in planned}, result["models"], commands)
    result["commands"] = commands
    result["verdict"] = verdict(result["models"])
    result["target"] = target(result["models"])
    if missing:
        result["partial"] = True
        result["missing"] = missing
    return result


def carry(s: Setting, names: set[str], models: list[dict[str, Any]], commands: dict[str, str]) -> dict[str, str]:
    """Add to `models` and `commands` the rows of the datasets in `names` (not run now) from the first
    results/imbalance-*.json of the same setting that has them; {dataset: device id it was measured on}."""
    from benchmarks.__main__ import RESULTS

    carried: dict[str, str] = {}
    for path in sorted(RESULTS.glob(f"{SECTION}-*.json")):
        earlier = read_json(path)
        if earlier.get("setting") != s.name:
            continue
        device = earlier["device"]["device_id"]
        for name in sorted(names - set(carried)):
            rows = [{**m, "device": m.get("device", device)} for m in earlier.get("models", []) if m["dataset"] == name]
            if rows:
                carried[name] = rows[0]["device"]
                models.extend(rows)
                commands.update({k: v for k, v in earlier.get("commands", {}).items() if k.split()[0] == name})
    return carried


def finished_wall_time(st: Step) -> float | None:
    """The wall time (s) of the step's last finished run, None when it has not finished (no stamp, no
    metrics.json in its output folder, or its config or upstream changed since: `steps.finished`, which
    also counts a run of older edgekd code or of the runner before the merge)."""
    if not (out_dir(st) / "metrics.json").is_file():
        return None
    done = finished(st)
    return None if done is None else done["seconds"]


def verdict(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and model (teacher, student): mean over seeds of macro F1, accuracy and the worst class's
    F1 with the default and with none, and the default's gain (positive: the default is better)."""
    out: dict[str, Any] = {}
    for dataset in sorted({m["dataset"] for m in models}):
        for kind in ("teacher", "student"):
            means = {}
            for weight in WEIGHTS:
                rows = [m for m in models if (m["dataset"], m["model"], m["class_weight"]) == (dataset, kind, weight)]
                if rows:
                    means[weight] = {k: round(float(np.mean([r[k] for r in rows])), 4)
                                     for k in ("f1_macro", "accuracy", "worst_f1")}
            if len(means) == 2:
                means["default_minus_none"] = {k: round(means["default"][k] - means["none"][k], 4)
                                               for k in means["default"]}
                # The same gain seed by seed (each seed's default against its own none): the spread.
                pair = {(m["class_weight"], m["seed"]): m for m in models if (m["dataset"], m["model"]) == (dataset, kind)}
                means["by_seed"] = {str(seed): {k: round(pair[("default", seed)][k] - pair[("none", seed)][k], 4)
                                                for k in ("f1_macro", "accuracy", "worst_f1")}
                                    for seed in sorted({sd for _, sd in pair})
                                    if ("default", seed) in pair and ("none", seed) in pair}
            out[f"{dataset} {kind}"] = means
    return out


SETTING_NOTES = {"slice": [
    "Stated training slice (`EDGEKD_BENCH_IMBALANCE=slice`; the full setting takes ~15 h on 2 cores): the AG News "
    "sample as the issue gives it (2,000 / 600 / 200 / 60 rows, whole test split), the first 2,400 arabic_news_ant "
    "training rows (class shares as the whole split's, largest/smallest 10.4; whole test split, 4,331 articles) "
    "and `--epochs 3` for every teacher and student instead of the schedule from the rows, so this compares class "
    "weight + selection metric at one fixed budget. The TF-IDF baseline trains on the same rows. arabic_news_ant's "
    "teachers start from MiniLM with an 8,000-token vocabulary trained on each seed's training rows (`edgekd "
    "adapt-vocab`, what `edgekd train`'s vocabulary-fit warning asks for; its word embeddings train at their own "
    "rate, `--embedding-lr` auto); the rows with MiniLM's English vocabulary, which stayed near the majority class, "
    "are in results/imbalance-linux-x86_64-amd-epyc-edd1ba49.json.", ""]}


def target(models: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's target, per dataset and seed with the default settings: teacher and student beat the
    TF-IDF baseline on macro F1 and no class has F1 = 0. A dataset meets it when every seed measured
    does; "not measured" while a seed lacks any of the three models."""
    out: dict[str, Any] = {}
    for dataset in sorted({m["dataset"] for m in models}):
        seeds = []
        for seed in sorted({m["seed"] for m in models if m["dataset"] == dataset}):
            row = {(m["model"], m["class_weight"]): m for m in models if (m["dataset"], m["seed"]) == (dataset, seed)}
            base, teacher, student = row.get(("baseline", "-")), row.get(("teacher", "default")), row.get(
                ("student", "default"))
            if not (base and teacher and student):
                seeds.append({"seed": seed, "met": None})
                continue
            checks = {f"{k} macro F1 > baseline": m["f1_macro"] > base["f1_macro"]
                      for k, m in (("teacher", teacher), ("student", student))}
            checks |= {f"{k}: no class with F1 = 0": not m["zero_f1_classes"] for k, m in (("teacher", teacher),
                                                                                            ("student", student))}
            seeds.append({"seed": seed, "met": all(checks.values()), "checks": checks,
                          "macro_f1": {"baseline": base["f1_macro"], "teacher": teacher["f1_macro"],
                                       "student": student["f1_macro"]}})
        decided = [x["met"] for x in seeds if x["met"] is not None]
        out[dataset] = {"seeds": seeds, "met": (all(decided) if decided else None),
                        "complete": bool(seeds) and all(x["met"] is not None for x in seeds)}
    return out


def markdown(result: dict[str, Any], device_id: str) -> list[str]:
    """The imbalance section of RESULTS.md."""
    lines = ["## Small, imbalanced data: class weights (issue 19)", "",
             f"`python -m benchmarks imbalance` on `{device_id}` ({result['setting']}): the default (`--class-weight "
             "auto`, balanced here; selection on validation macro F1"
             + ("; epochs and warm-up from the training rows" if SETTINGS[result["setting"]].epochs is None else
                f"; warm-up from the training rows, `--epochs {SETTINGS[result['setting']].epochs}`")
             + f") vs `--class-weight none`, seeds {', '.join(map(str, result['seeds']))}, test split.", "",
             *SETTING_NOTES.get(result["setting"], []),
             *[f"{name}: carried from the run on `{device}` (results/{SECTION}-{device}.json); this run redid the "
               f"other datasets." for name, device in (result.get("carried") or {}).items()],
             *([""] if result.get("carried") else []),
             *([f"**Partial run**: not yet measured: {', '.join(result['missing'])}.", ""] if result.get("partial") else []),
             "| dataset | model | class weight | seed | accuracy | macro F1 | worst class (F1) | F1 = 0 | epochs run / planned "
             "| wall (min) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        epochs = f"{m.get('epochs_run') or 0:g} / {m['epochs_planned']:g}" if m.get("epochs_planned") else "-"
        weight = m["class_weight"] + (f" ({m['class_weight_used']})" if m["class_weight"] == "default" else "")
        lines.append(f"| {m['dataset']} | {m['model']} | {weight} | {m['seed']} | {m['accuracy']:.4f} | "
                     f"{m['f1_macro']:.4f} | {m['worst_class']} ({m['worst_f1']:.3f}) | "
                     f"{', '.join(m['zero_f1_classes']) or '-'} | {epochs} | {m['wall_time_s'] / 60:.1f} |")
    lines += ["", "Mean over seeds, default minus none (positive: the default is better):", ""]
    for key, v in result["verdict"].items():
        d = v.get("default_minus_none")
        if d:
            seeds = v.get("by_seed") or {}
            spread = "; ".join(f"seed {sd}: {g['f1_macro'] * 100:+.2f}" for sd, g in seeds.items())
            lines.append(f"- {key}: macro F1 {d['f1_macro'] * 100:+.2f} pt ({spread}), accuracy "
                         f"{d['accuracy'] * 100:+.2f} pt, worst class F1 {d['worst_f1'] * 100:+.2f} pt")
    lines += ["", "Target (issue 19), default settings, every seed: teacher and student beat the TF-IDF baseline on "
              "macro F1 and no class has F1 = 0:", ""]
    for dataset, t in (result.get("target") or target(result["models"])).items():
        per_seed = "; ".join(
            f"seed {x['seed']}: " + ("not measured yet" if x["met"] is None else
                                     f"baseline {x['macro_f1']['baseline']:.4f}, teacher {x['macro_f1']['teacher']:.4f}, "
                                     f"student {x['macro_f1']['student']:.4f} -> {'met' if x['met'] else 'not met'}")
            for x in t["seeds"])
        state = ("**not measured**" if t["met"] is None else "**met**" if t["met"] else "**not met**") + (
            "" if t["complete"] else " (so far)")
        lines.append(f"- {dataset}: {state} ({per_seed})")
    lines += ["", "Commands (`$CACHE` = ~/.cache/edgekd/benchmarks; wall times above, on 2 cores shared with other "
              "work for part of the run):", "", "```", *result["commands"].values(), "```"]
    lines += ["", "The `auto` threshold's proxy (TF-IDF + LR, class_weight balanced minus None, macro F1 in points; "
              "whole balanced test set / test sample with the training class shares):", "",
              "| largest/smallest | seed | balanced test | same-shares test |", "|---|---|---|---|"]
    for r in result["sweep"]:
        gain = [(r[f"balanced {t}"]["f1_macro"] - r[f"none {t}"]["f1_macro"]) * 100
                for t in ("balanced_test", "same_shares_test")]
        lines.append(f"| {r['ratio']:g} | {r['seed']} | {gain[0]:+.2f} | {gain[1]:+.2f} |")
    return lines


def main() -> None:
    """Publish what the setting's cache holds so far (no step is run): results JSON and RESULTS.md section."""
    from benchmarks.__main__ import settings_part
    from edgekd.verify.device import fingerprint

    settings_part("imbalance", fingerprint(), run=False)


if __name__ == "__main__":
    main()
