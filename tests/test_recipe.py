"""Recipes: YAML -> typed config, unknown keys named with the nearest valid one, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.errors import RecipeError
from edgekd.recipe import load_recipe, parse_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("name", ["demo", "ag_news", "sst2", "imdb", "arabic_news"])
def test_shipped_recipes_load(name: str) -> None:
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.name == name
    assert recipe.students.specs and all(s.startswith("layers=") for s in recipe.students.specs)
    assert Path(recipe.data.path).name in {"ag_news", "sst2", "imdb", "arabic_news_ant"}


def test_demo_is_small() -> None:
    demo = load_recipe(RECIPES / "demo.yaml")
    assert demo.data.max_train_samples == 1500 and demo.teacher.epochs == 1 and demo.teacher.max_length == 64
    assert demo.export.targets == ["onnx", "openvino", "coreml"] and demo.export.int8
    assert demo.verify.max_samples == 0 and demo.data.max_test_samples == 1000  # verify: the whole test slice


def test_typo_names_key_and_nearest() -> None:
    with pytest.raises(RecipeError, match=r"unknown recipe key 'teacher.epoch': did you mean 'epochs'\?"):
        parse_recipe({"data": {"path": "x"}, "teacher": {"epoch": 2}})
    with pytest.raises(RecipeError, match=r"unknown recipe key 'studnets': did you mean 'students'\?"):
        parse_recipe({"data": {"path": "x"}, "studnets": {}})
    with pytest.raises(RecipeError, match=r"'verify.gates.int8.agrement': did you mean 'agreement'"):
        parse_recipe({"data": {"path": "x"}, "verify": {"gates": {"int8": {"agrement": 0.9}}}})


def test_types_are_checked_and_widened() -> None:
    r = parse_recipe({"data": {"path": "x"}, "teacher": {"epochs": 2, "lr": "1e-4"}})
    assert r.teacher.epochs == 2.0 and isinstance(r.teacher.epochs, float) and r.teacher.lr == 1e-4
    with pytest.raises(RecipeError, match=r"'teacher.batch_size' must be int, got 'big'"):
        parse_recipe({"data": {"path": "x"}, "teacher": {"batch_size": "big"}})
    with pytest.raises(RecipeError, match=r"'export.targets' has \['tflite'\]"):
        parse_recipe({"data": {"path": "x"}, "export": {"targets": ["tflite"]}})
    with pytest.raises(RecipeError, match="data.path"):
        parse_recipe({})


def test_overrides_win_and_are_checked() -> None:
    base = {"data": {"path": "x"}, "teacher": {"epochs": 3}}
    r = parse_recipe(base, ["teacher.epochs=1", "students.specs=[layers=1]", "export.targets=onnx,openvino",
                            "verify.gates.int8.agreement=0.97"])
    assert r.teacher.epochs == 1.0 and r.students.specs == ["layers=1"]
    assert r.export.targets == ["onnx", "openvino"] and r.verify.gates == {"int8": {"agreement": 0.97}}
    assert base["teacher"]["epochs"] == 3  # the parsed YAML is not mutated
    with pytest.raises(RecipeError, match=r"'teacher.max_lenght': did you mean 'max_length'"):
        parse_recipe(base, ["teacher.max_lenght=32"])
    with pytest.raises(RecipeError, match="section.key=value"):
        parse_recipe(base, ["teacher.epochs"])


def test_relative_data_path_resolves_from_recipe_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "r.yaml").write_text("data: {path: data}\nstudents: {specs: ['layers=1']}\n")
    assert load_recipe(tmp_path / "r.yaml").data.path == str((tmp_path / "data").resolve())
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_run_cli_reports_typo_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: x}\nexport: {target: [onnx]}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edgekd run: error: unknown recipe key 'export.target': did you mean 'targets'?"


def test_defaults_come_from_the_stage_configs() -> None:
    """Each default is written once: the recipe's sections read theirs from the stage configs (the
    distillation defaults from DistillConfig, torch-free in train.common and re-exported by train.distill)."""
    from edgekd.exporters.bundle_writer import ExportOptions
    from edgekd.recipe import StudentsConfig, TeacherConfig
    from edgekd.train.common import DistillConfig, TrainConfig
    from edgekd.train.distill import DistillConfig as Reexported

    assert Reexported is DistillConfig
    teacher, students, train, distill = TeacherConfig(), StudentsConfig(), TrainConfig(), DistillConfig()
    assert (teacher.lr, teacher.batch_size, teacher.max_length, teacher.patience) == (
        train.lr, train.batch_size, train.max_length, train.patience)
    assert (students.lr, students.temperature, students.alpha) == (distill.train.lr, distill.temperature, distill.alpha)
    assert parse_recipe({"data": {"path": "d"}}).export.calibration_size == ExportOptions().calibration_size


def test_calibration_samples_is_calibration_size() -> None:
    base = {"data": {"path": "d"}, "export": {"calibration_samples": 32}}
    assert parse_recipe(base).export.calibration_size == 32
    assert parse_recipe(base, ["export.calibration_size=64"]).export.calibration_size == 64  # the override wins
    with pytest.raises(RecipeError, match="'export.calibration_samples' and 'export.calibration_size' are the same"):
        parse_recipe({"data": {"path": "d"}, "export": {"calibration_samples": 32, "calibration_size": 64}})


def test_embedding_lr_reaches_the_train_and_distill_commands() -> None:
    """`teacher.embedding_lr` / `students.embedding_lr` become `--embedding-lr` on the step commands (unset:
    no flag, the auto rate); a rate <= 0 is refused naming the key."""
    from edgekd.commands.train import training_flags
    from edgekd.pipeline import train_config

    recipe = parse_recipe({"data": {"path": "d"}, "teacher": {"embedding_lr": 0.002}})
    flags = training_flags(train_config(recipe.teacher, recipe))
    assert flags[flags.index("--embedding-lr") + 1] == "0.002"
    assert "--embedding-lr" not in training_flags(train_config(recipe.students, recipe))
    with pytest.raises(RecipeError, match=r"'students.embedding_lr' is 0.0; use a rate above 0, or null for auto"):
        parse_recipe({"data": {"path": "d"}, "students": {"embedding_lr": 0}})
