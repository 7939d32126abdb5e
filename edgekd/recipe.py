"""Pipeline recipes: a YAML file -> typed config dataclasses, validated before any work starts.

    name: demo
    out: runs/demo
    data: {path: ../shared/data/ag_news, max_train_samples: 1500}
    teacher: {model: sentence-transformers/all-MiniLM-L6-v2, epochs: 1, max_length: 64}
    students: {specs: ["layers=2"], epochs: 2}
    export: {targets: [onnx, openvino, coreml], int8: true}
    verify: {max_samples: 300, gates: {int8: {agreement: 0.98}}}

An unknown key fails with `RecipeError` naming it and the nearest valid key; a value of the wrong
type names the key, the value and the type wanted. `--set section.key=value` flags (YAML values)
override the file through the same checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.commands._common import field_default
from edgekd.commands.train import TrainStage
from edgekd.data import DataSpec
from edgekd.errors import RecipeError
from edgekd.exporters.bundle_writer import ExportOptions
from edgekd.train.common import DistillConfig, TrainConfig
from edgekd.verify.latency import LatencySettings
from edgekd.verify.runner import VerifyConfig

# A setting a stage config also has takes its default from there (`field_default`): each default is
# written once. The pipeline turns these sections into the stage configs (`edgekd.pipeline.plan`).


def _train(name: str) -> Any:
    return field_default(TrainConfig, name)


def _distill(name: str) -> Any:
    return field_default(DistillConfig, name)


@dataclass
class DataConfig:
    """The dataset (see `edgekd.data.DataSpec`); a relative path is tried from the current
    directory, then from the recipe's directory. `max_test_samples` keeps a stratified sample of the
    test split (fixed seed), which every step then evaluates on."""

    path: str = ""
    text_columns: list[str] = field(default_factory=lambda: field_default(DataSpec, "text_columns"))
    label_column: str = field_default(DataSpec, "label_column")
    label_map: str | None = None
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    seed: int = field_default(DataSpec, "seed")


@dataclass
class BaselineConfig:
    """The TF-IDF + logistic regression baseline."""

    enabled: bool = True


@dataclass
class TeacherConfig:
    """Fine-tuning the teacher (`edgekd train`, a `TrainStage`); `path` uses an already trained teacher
    checkpoint instead."""

    model: str = field_default(TrainStage, "model")
    path: str | None = None
    epochs: float | None = _train("epochs")  # None: from the number of training rows (see `edgekd train --help`)
    lr: float = _train("lr")
    # word-embedding matrix's peak rate (edgekd train --embedding-lr); None: auto (higher on an adapt-vocab base)
    embedding_lr: float | None = _train("embedding_lr")
    batch_size: int = _train("batch_size")
    max_length: int = _train("max_length")
    class_weight: str = _train("class_weight")  # auto | none | balanced | sqrt (edgekd train --class-weight)
    select_metric: str = _train("select_metric")  # auto | accuracy | f1_macro (edgekd train --select-metric)
    patience: int = _train("patience")  # early stopping on the selection metric; 0 = never
    # differential-attention layers (`edgekd train --diff-attention`): 0.5, upper:1, 0+2, ...; None = plain
    diff_attention: str | float | None = None
    # a WordPiece vocabulary of this many tokens trained on the training texts before fine-tuning (`edgekd
    # adapt-vocab`, FVT embeddings; a new language); None = the base model's vocabulary. Students inherit it.
    vocab_size: int | None = None
    # epochs of masked-LM pre-training on the training texts after the vocabulary swap (`edgekd adapt-vocab
    # --mlm-epochs`; at the teacher's max_length and batch size); needs vocab_size; 0 = none
    mlm_epochs: float = 0.0


@dataclass
class StudentsConfig:
    """Distillation (`edgekd distill`, a `DistillStage`): one student per spec (`layers=K`, `layers=i,j,k`,
    either with `,ffn=N,heads=H` width pruning, or a model reference).

    lr, temperature and alpha default to `train.common.DistillConfig`'s (torch-free), as `edgekd distill`'s flags do."""

    specs: list[str] = field(default_factory=lambda: ["layers=3"])
    epochs: float | None = _train("epochs")  # None: from the number of training rows
    lr: float = _distill("train").lr
    embedding_lr: float | None = _train("embedding_lr")  # None: auto (a student's rows are its teacher's: lr)
    batch_size: int = _train("batch_size")
    temperature: float = _distill("temperature")
    alpha: float = _distill("alpha")
    class_weight: str = _train("class_weight")  # weights the cross-entropy term only (1 - alpha), not the soft targets
    select_metric: str = _train("select_metric")
    patience: int = _train("patience")


@dataclass
class ExportConfig:
    """Export targets and precisions, for every student (`edgekd export`, an `ExportStage`; see
    `edgekd export --help`). The recipe exports every target with int8 by default, the command onnx only."""

    targets: list[str] = field(default_factory=lambda: ["onnx", "openvino", "coreml"])
    int8: bool = True
    # fail the export (bundle not written) when a target ends without int8, instead of dropping it
    require_int8: bool = field_default(ExportOptions, "require_int8")
    # calibration texts (`--calibration-size`); the recipe key `calibration_samples` is accepted too
    calibration_size: int = field_default(ExportOptions, "calibration_size")
    # int8 accuracy budget on the validation split; None = the gate table's int8 accuracy_drop gate
    # (the recipe's verify.gates.int8.accuracy_drop when set: export and verify share one gate table)
    max_accuracy_drop: float | None = field_default(ExportOptions, "max_accuracy_drop")
    # Core ML compute precision: fp16 (ANE-friendly) or fp32
    coreml_precision: str = field_default(ExportOptions, "coreml_precision")
    # ONNX int8 word-embedding rows: 8, or 4 (blockwise int4, kept only when accuracy control passes it)
    embedding_bits: int = field_default(ExportOptions, "embedding_bits")
    # cut the position-embedding tables to the rows max_length reads (`--trim-positions`; lossless)
    trim_positions: bool = field_default(ExportOptions, "trim_positions")
    # prune each student's vocabulary to the tokens its training data uses at least this often before
    # export (`edgekd prune-vocab`, a `prune-vocab <student>` step); None = export the student as trained
    prune_vocab_min_count: int | None = None


@dataclass
class VerifySettings:
    """`edgekd verify` settings (`verify.runner.VerifyConfig`); `gates: {precision: {metric: threshold}}`
    override the defaults. `allow_partial`: pass although some artifacts are not verified here (backend not
    installed, or left out by `backends`); off, the verify step fails before loading any model."""

    max_samples: int = field_default(VerifyConfig, "max_samples")
    backends: list[str] | None = field_default(VerifyConfig, "backends")
    runs: int = field_default(LatencySettings, "runs")
    cold_start: bool = field_default(LatencySettings, "cold_start")
    allow_partial: bool = field_default(VerifyConfig, "allow_partial")
    gates: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Recipe:
    """A whole pipeline run."""

    name: str = "run"
    out: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    students: StudentsConfig = field(default_factory=StudentsConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    verify: VerifySettings = field(default_factory=VerifySettings)
    source: str = ""  # the recipe file (set by load_recipe, not read from YAML)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the step stamps hash parts of it)."""
        return dataclasses.asdict(self)


# Other spellings a recipe may use for a key: {section: {alias: key}}.
_ALIASES: dict[str, dict[str, str]] = {"export": {"calibration_samples": "calibration_size"}}
_VALID_PRECISIONS = ("fp32", "fp16", "int8")


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """`value` checked (and int->float widened) against the type hint `hint`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(where, value, arg)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[0])
    if origin is list:
        if isinstance(value, str):  # a comma list from the CLI or a lone item
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise RecipeError(f"recipe key '{where}' must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"recipe key '{where}' must be a mapping, got {value!r}")
        _, item = typing.get_args(hint)
        return {str(k): _check_type(f"{where}.{k}", v, item) for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 as a string
        except ValueError:
            pass
    if isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise RecipeError(f"recipe key '{where}' must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _build(cls: type, data: Any, where: str) -> Any:
    """An instance of dataclass `cls` from a mapping, every key and type checked."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"recipe section '{where or 'top level'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    data = _resolve_aliases(data, where)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise RecipeError(f"unknown recipe key '{path}': {_nearest(str(key), names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, path)
        else:
            kwargs[key] = _check_type(path, value, hint)
    return cls(**kwargs)


def _resolve_aliases(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`data` with each alias key of section `where` renamed to its key (both given: RecipeError)."""
    aliases = _ALIASES.get(where, {})
    if not any(k in aliases for k in data):
        return data
    out = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name in out or (name != key and name in data):
            raise RecipeError(f"recipe keys '{where}.{key}' and '{where}.{name}' are the same setting; keep one")
        out[name] = value
    return out


def _spellings(where: str, key: str) -> list[str]:
    """The other spellings of `key` in section `where` (its aliases, or the key an alias names)."""
    aliases = _ALIASES.get(where, {})
    name = aliases.get(key, key)
    return [k for k in (name, *(a for a, n in aliases.items() if n == name)) if k != key]


def _validate(recipe: Recipe) -> None:
    from edgekd.train.imbalance import CLASS_WEIGHTS, SELECT_METRICS

    for section in ("teacher", "students"):
        cfg = getattr(recipe, section)
        for key, allowed in (("class_weight", CLASS_WEIGHTS), ("select_metric", SELECT_METRICS)):
            if getattr(cfg, key) not in allowed:
                raise RecipeError(f"recipe key '{section}.{key}' is {getattr(cfg, key)!r}; use one of {', '.join(allowed)}")
        if cfg.patience < 0:
            raise RecipeError(f"recipe key '{section}.patience' is {cfg.patience}; use 0 (no early stopping) or more")
        if cfg.embedding_lr is not None and not cfg.embedding_lr > 0:
            raise RecipeError(f"recipe key '{section}.embedding_lr' is {cfg.embedding_lr}; use a rate above 0, "
                              "or null for auto")
    from edgekd.exporters import TARGETS  # the backend registry's export targets

    bad = [t for t in recipe.export.targets if t not in TARGETS]
    if bad:
        raise RecipeError(f"recipe key 'export.targets' has {bad}; choose from {list(TARGETS)}")
    if recipe.export.coreml_precision not in ("fp16", "fp32"):
        raise RecipeError(f"recipe key 'export.coreml_precision' is {recipe.export.coreml_precision!r}; "
                          "use fp16 or fp32")
    if recipe.export.embedding_bits not in (4, 8):
        raise RecipeError(f"recipe key 'export.embedding_bits' is {recipe.export.embedding_bits!r}; use 8, or 4 "
                          "(ONNX int8: 4-bit word-embedding rows)")
    if recipe.export.embedding_bits == 4 and not (recipe.export.int8 and "onnx" in recipe.export.targets):
        raise RecipeError("recipe key 'export.embedding_bits' is 4, a setting of the ONNX int8 artifact: set "
                          "export.int8: true and list onnx in export.targets")
    from edgekd.verify.parity import GATE_METRICS

    for precision, metrics in recipe.verify.gates.items():
        if precision not in _VALID_PRECISIONS:
            raise RecipeError(f"unknown recipe key 'verify.gates.{precision}': {_nearest(precision, list(_VALID_PRECISIONS))}")
        for metric in metrics:
            if metric not in GATE_METRICS:
                raise RecipeError(f"unknown recipe key 'verify.gates.{precision}.{metric}': "
                                  f"{_nearest(metric, list(GATE_METRICS))}")
    if recipe.export.prune_vocab_min_count is not None and recipe.export.prune_vocab_min_count < 1:
        raise RecipeError(f"recipe key 'export.prune_vocab_min_count' is {recipe.export.prune_vocab_min_count}; "
                          "use 1 or more (1 keeps every token the training texts use), or null for no pruning")
    if recipe.teacher.diff_attention is not None:
        from edgekd.errors import ModelError
        from edgekd.train.diff_attention import parse_diff

        recipe.teacher.diff_attention = str(recipe.teacher.diff_attention)  # YAML reads 0.5 as a float
        try:
            parse_diff(recipe.teacher.diff_attention)
        except ModelError as exc:
            raise RecipeError(f"recipe key 'teacher.diff_attention': {exc}") from None
    if recipe.teacher.vocab_size is not None and (recipe.teacher.vocab_size < 100 or recipe.teacher.path):
        raise RecipeError(f"recipe key 'teacher.vocab_size' is {recipe.teacher.vocab_size}"
                          + (" with teacher.path set: a trained teacher keeps its vocabulary; drop one of them"
                             if recipe.teacher.path else "; use 100 or more (e.g. 16000), or null for the base vocabulary"))
    if recipe.teacher.mlm_epochs and (recipe.teacher.vocab_size is None or recipe.teacher.mlm_epochs < 0):
        raise RecipeError(f"recipe key 'teacher.mlm_epochs' is {recipe.teacher.mlm_epochs}: "
                          + ("it must be 0 or more" if recipe.teacher.mlm_epochs < 0 else
                             "masked-LM pre-training follows a vocabulary swap; set teacher.vocab_size too (e.g. 16000) "
                             "or drop it"))
    if not recipe.data.path:
        raise RecipeError("recipe key 'data.path' is required: the dataset directory, file or hf:NAME")
    if not recipe.students.specs:
        raise RecipeError("recipe key 'students.specs' is empty; give at least one, e.g. ['layers=3']")


def parse_recipe(data: Any, overrides: list[str] | None = None) -> Recipe:
    """A Recipe from a parsed YAML mapping and `key.sub=value` overrides (values parsed as YAML)."""
    import copy

    import yaml

    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a YAML mapping, got {type(data).__name__}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r} must look like section.key=value, e.g. teacher.epochs=1")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r}: '{part}' is not a section")
        for other in _spellings(".".join(parts[:-1]), parts[-1]):  # the override replaces the file's spelling
            node.pop(other, None)
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    recipe = _build(Recipe, data, "")
    _validate(recipe)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, validate and resolve a recipe file (relative data paths: cwd first, then the recipe's dir)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} not found; see recipes/ for examples (e.g. recipes/demo.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    recipe = parse_recipe(data, overrides)
    recipe.source = str(path)
    p = recipe.data.path
    if not p.startswith("hf:") and not Path(p).expanduser().exists() and (path.parent / p).exists():
        recipe.data.path = str((path.parent / p).resolve())
    return recipe
