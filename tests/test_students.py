"""Student specs and layer-copy students: exact weight copy, spacing, other encoder families."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.errors import ModelError
from edgekd.train.students import (
    build_layer_student,
    encoder_layer_path,
    evenly_spaced_layers,
    parse_student_spec,
    resolve_layers,
)


def test_parse_specs_and_names() -> None:
    assert parse_student_spec("layers=3").count == 3
    assert parse_student_spec("layers=0, 2,5").indices == (0, 2, 5)
    assert parse_student_spec("layers=0,2,5").name == "layers-0-2-5"
    ref = parse_student_spec("sentence-transformers/all-MiniLM-L6-v2")
    assert ref.reference == "sentence-transformers/all-MiniLM-L6-v2" and ref.name == "all-MiniLM-L6-v2"
    for bad, message in [("layers=0", "at least 1"), ("layers=2,1", "ascending"), ("layers=1,1", "distinct"),
                         ("layers=x", "integers"), ("", "empty")]:
        with pytest.raises(ModelError, match=message):
            parse_student_spec(bad)


def test_width_and_attention_options_follow_the_layers() -> None:
    spec = parse_student_spec("layers=3, heads=8,ffn=768")
    assert (spec.count, spec.options, spec.name) == (3, (("ffn", 768), ("heads", 8)), "layers-3-ffn768-heads8")
    assert spec.option("ffn") == 768 and spec.option("diff") is None
    listed = parse_student_spec("layers=0,2,5,heads=4")
    assert listed.indices == (0, 2, 5) and listed.options == (("heads", 4),) and listed.name == "layers-0-2-5-heads4"
    assert parse_student_spec("layers=3").options == () and parse_student_spec("layers=3").name == "layers-3"
    for bad, message in [("layers=3,foo=1", "unknown option 'foo'.*ffn="), ("layers=3,ffn=0", "positive integer"),
                         ("layers=3,heads=x", "positive integer"), ("layers=3,ffn=", "needs a value"),
                         ("layers=3,ffn=2,ffn=4", "given twice"), ("layers=ffn=3", "needs a count")]:
        with pytest.raises(ModelError, match=message):
            parse_student_spec(bad)


def test_evenly_spaced_layers_match_distilbert_choice() -> None:
    assert evenly_spaced_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's alternate-layer copy
    assert evenly_spaced_layers(6, 3) == [0, 2, 5]
    assert evenly_spaced_layers(6, 2) == [0, 5]
    assert evenly_spaced_layers(6, 1) == [5]
    with pytest.raises(ModelError, match="teacher has only 6"):
        resolve_layers(parse_student_spec("layers=6"), 6)
    with pytest.raises(ModelError, match=r"\[6, 9\]"):
        resolve_layers(parse_student_spec("layers=0,6,9"), 6)


def test_layer_copy_copies_exactly_the_chosen_teacher_layers(tiny_bert: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    assert encoder_layer_path(teacher) == "bert.encoder.layer"
    student = build_layer_student(teacher, [1])
    assert student.config.num_hidden_layers == 1 and len(student.bert.encoder.layer) == 1
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key.replace("encoder.layer.0.", "encoder.layer.1.")
        assert torch.equal(value, t_state[source]), key
    # The copy is a copy: training the student leaves the teacher untouched.
    with torch.no_grad():
        student.bert.encoder.layer[0].output.dense.weight.add_(1.0)
    assert not torch.equal(student.bert.encoder.layer[0].output.dense.weight,
                           teacher.bert.encoder.layer[1].output.dense.weight)
    # Keeping every layer reproduces the teacher's logits exactly.
    full = build_layer_student(teacher, [0, 1]).eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    assert torch.equal(full(input_ids=ids).logits, teacher.eval()(input_ids=ids).logits)


def test_layer_copy_finds_mpnet_layers() -> None:
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=100, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=32, num_labels=3)
    teacher = MPNetForSequenceClassification(config).eval()
    assert encoder_layer_path(teacher) == "mpnet.encoder.layer"
    student = build_layer_student(teacher, [0, 3]).eval()
    assert torch.equal(student.mpnet.encoder.layer[1].attention.attn.q.weight,
                       teacher.mpnet.encoder.layer[3].attention.attn.q.weight)
    # MPNet's shared relative-position bias lives outside the layer list and is copied too.
    assert torch.equal(student.mpnet.encoder.relative_attention_bias.weight,
                       teacher.mpnet.encoder.relative_attention_bias.weight)
    assert student(input_ids=torch.tensor([[0, 5, 7, 2]])).logits.shape == (1, 3)
