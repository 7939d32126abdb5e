"""`--trim-positions` (exporters/positions.py): the position table keeps exactly the rows max_length reads
(BERT from 0, RoBERTa-style tables after the padding id), the trimmed model's logits are the original's,
every target exports the trimmed model with its check passing, and an architecture that reads rows the
probe did not see is refused with the model left whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import read_texts

import edgekd
from edgekd import bundle as bundle_mod
from edgekd.errors import ExportError
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
from edgekd.exporters.positions import trim_position_rows

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_a_bert_table_keeps_max_length_rows_and_the_logits(tiny_bert: Path) -> None:
    from edgekd.train.infer import load_checkpoint, torch_logits

    model, tokenizer = load_checkpoint(tiny_bert)
    texts = read_texts("ag_news", "test", 40)[0]
    texts.append(" ".join(texts))  # longer than max_length: the truncated row uses the last position
    before = torch_logits(model, tokenizer, texts, 24)  # the HF tokenizer's padding, not the probe's inputs
    original = model.bert.embeddings.position_embeddings.weight.detach().clone()

    records = trim_position_rows(model, 24, tokenizer.pad_token_id, INPUTS)

    assert records == [{"module": "bert.embeddings.position_embeddings", "rows": 24, "of": 512}]
    table = model.bert.embeddings.position_embeddings
    assert table.weight.shape == (24, 32)
    assert (table.weight.detach() == original[:24]).all()
    assert np.array_equal(torch_logits(model, tokenizer, texts, 24), before)
    # a second trim finds nothing more to cut
    assert trim_position_rows(model, 24, tokenizer.pad_token_id, INPUTS) == []


def test_a_roberta_table_keeps_the_rows_after_the_padding_id() -> None:
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=514, pad_token_id=1, num_labels=3)
    model = RobertaForSequenceClassification(config).eval()
    ids = torch.randint(3, 100, (3, 20))
    mask = torch.ones_like(ids)
    ids[1, 12:], mask[1, 12:] = 1, 0  # padded rows: position ids stay at the padding id
    ids[2, 5:], mask[2, 5:] = 1, 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits

    records = trim_position_rows(model, 20, 1, ["input_ids", "attention_mask"])

    # positions are padding_idx + 1 .. padding_idx + 20: rows 0..21
    assert records == [{"module": "roberta.embeddings.position_embeddings", "rows": 22, "of": 514}]
    assert model.roberta.embeddings.position_embeddings.padding_idx == 1
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)


def test_a_model_that_reads_rows_the_probe_missed_is_refused_and_left_whole() -> None:
    import torch

    class Embeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.position_embeddings = torch.nn.Embedding(64, 4)

    class Reader(torch.nn.Module):
        """Looks up positions through the table, then also reads its last row directly."""

        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.word = torch.nn.Embedding(10, 4)

        def get_input_embeddings(self) -> torch.nn.Module:
            return self.word

        def forward(self, input_ids, attention_mask=None):  # noqa: ANN001, ANN201
            table = self.embeddings.position_embeddings
            positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
            out = (self.word(input_ids) + table(positions)).sum(1) + table.weight[-1]
            return type("Out", (), {"logits": out})

    model = Reader()
    table = model.embeddings.position_embeddings
    with pytest.raises(ExportError, match="left untrimmed: export without --trim-positions"):
        trim_position_rows(model, 8, 0, ["input_ids", "attention_mask"])
    assert model.embeddings.position_embeddings is table


@pytest.fixture(scope="module")
def trimmed(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, _ = read_texts("ag_news", "test", 60)
    out = tmp_path_factory.mktemp("trim") / "bundle"
    export_bundle(tiny_bert, out, ExportData(test_texts=texts), ExportOptions(targets=["all"], check_per_class=16,
                                                                             trim_positions=True), log=lambda m: None)
    return out


def test_every_target_exports_the_trimmed_model_with_its_check_passing(trimmed: Path, tiny_onnx_bundle: Path) -> None:
    import onnx
    from onnx import numpy_helper

    manifest = bundle_mod.read_manifest(trimmed)
    assert manifest.provenance["position_rows"] == [
        {"module": "bert.embeddings.position_embeddings", "rows": 128, "of": 512}]
    assert manifest.provenance["export_options"]["trim_positions"] is True
    for artifact in manifest.artifacts:
        assert manifest.parity[artifact.name]["status"] == "passed", manifest.parity[artifact.name]
    tables = [numpy_helper.to_array(t) for t in onnx.load(str(trimmed / "onnx/model.onnx")).graph.initializer
              if "position_embeddings" in t.name]
    assert [t.shape for t in tables] == [(128, 32)]
    # the same checkpoint exported untrimmed: 384 rows x 32 x 4 bytes larger, the same logits
    full = bundle_mod.read_manifest(tiny_onnx_bundle).artifact("onnx", "fp32")
    assert full.bytes - manifest.artifact("onnx", "fp32").bytes == pytest.approx(384 * 32 * 4, abs=2048)
    texts = read_texts("ag_news", "train", 30)[0]
    texts.append(" ".join(texts))  # truncated at max_length: reads the last kept row
    for backend in ("onnx", "openvino"):
        got = edgekd.load(trimmed, backend=backend, precision="fp32").logits(texts)
        want = edgekd.load(tiny_onnx_bundle, backend="onnx", precision="fp32").logits(texts)
        assert np.abs(got - want).max() <= 1e-5, backend


def test_trim_positions_reaches_the_export_command_and_the_recipe(tmp_path: Path) -> None:
    from edgekd.commands.export import ExportStage
    from edgekd.recipe import load_recipe

    stage = ExportStage(Path("ckpt"), Path("out"), ExportOptions(trim_positions=True))
    assert "--trim-positions" in stage.command()
    assert "--trim-positions" not in ExportStage(Path("ckpt"), Path("out"), ExportOptions()).command()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {path: data}\nexport: {trim_positions: true}\n")
    assert load_recipe(recipe).export.trim_positions is True


def test_an_onnx_int8_export_of_a_trimmed_model_keeps_its_int8_with_max_length_rows(trained_tiny_bert: Path,
                                                                                       tmp_path: Path) -> None:
    import onnx
    from conftest import AG_LABELS, TRAINED_MAX_LENGTH, TRAINED_ROWS

    texts, names = read_texts("ag_news", "train", TRAINED_ROWS)
    ids = [AG_LABELS.index(n) for n in names]
    half = TRAINED_ROWS // 2  # rows it was trained on: margins large enough for int8
    data = ExportData(test_texts=texts[half:], train=(texts[:half], ids[:half]), validation=(texts[half:], ids[half:]))
    manifest = export_bundle(trained_tiny_bert, tmp_path / "b", data,
                             ExportOptions(targets=["onnx"], int8=True, calibration_size=64, check_per_class=8,
                                           trim_positions=True), log=lambda m: None)
    assert manifest.dropped == [] and manifest.artifact("onnx", "int8") is not None
    graph = onnx.load(str(tmp_path / "b" / manifest.artifact("onnx", "int8").path)).graph
    tables = [list(t.dims) for t in graph.initializer if "position_embeddings" in t.name and len(t.dims) == 2]
    assert tables == [[TRAINED_MAX_LENGTH, 32]]  # the int8 table (its scale and zero point are scalars)
    # the decision's accuracy, recomputed through edgekd.load on the validation rows
    chosen = next(t for t in manifest.calibration["accuracy_control"]["onnx"]["tried"] if t["accepted"])
    got = edgekd.load(tmp_path / "b", backend="onnx", precision="int8").logits(texts[half:]).argmax(1)
    assert float((got == np.array(ids[half:])).mean()) == pytest.approx(chosen["accuracy"])
