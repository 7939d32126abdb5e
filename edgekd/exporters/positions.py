"""`--trim-positions`: cut a model's learned absolute-position table to the rows a bundle can read.

A bundle's tokenizer truncates every text to its max_length, so an encoder with a 512-row position table
(BERT, MiniLM; 514 for RoBERTa and MPNet, whose positions start after the padding id) only ever reads
the first max_length (+ offset) rows: at max_length 64 the other 448 are 0.69 MB of an fp32 artifact and
0.17 MB of an int8 one, dead weight that every backend would ship.

Which rows are read is measured, not assumed per architecture: a forward hook on each position table
records the indices it is given for a full-length batch (one unpadded row, one half padding), the
largest positions any input within max_length can produce (position ids grow with the token index;
padding maps to a fixed id at or below them). The table then keeps rows 0..max, and the trimmed model
must give bit-identical logits on that batch, else the original table is put back and the export
stops. The artifacts then accept no input longer than max_length (an engine raises or reads zeros),
which is why it is opt-in: a caller feeding the bare engine longer inputs than the bundle's tokenizer
makes would break. Every artifact's post-export check still compares it with the untrimmed
checkpoint's logits (the references are computed before the trim)."""

from __future__ import annotations

from typing import Any

from edgekd.errors import ExportError

SUFFIX = "position_embeddings"  # HF's name for a learned absolute-position table (BERT, RoBERTa, MPNet, ...)


def _tables(model: Any) -> list[tuple[str, Any]]:
    import torch

    return [(name, m) for name, m in model.named_modules()
            if name.rsplit(".", 1)[-1] == SUFFIX and isinstance(m, torch.nn.Embedding)]


def _probe(model: Any, max_length: int, pad_id: int, inputs: list[str]) -> dict[str, Any]:
    """The full-length batch: row 0 unpadded, row 1 half padding; every input the model takes."""
    import torch

    vocab = model.get_input_embeddings().num_embeddings
    token = (pad_id + 1) % vocab  # any id but padding: positions depend on which tokens are padding only
    ids = torch.full((2, max_length), token, dtype=torch.long)
    mask = torch.ones_like(ids)
    ids[1, max_length // 2:] = pad_id
    mask[1, max_length // 2:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {n: batch[n] for n in inputs if n in batch}


def trim_position_rows(model: Any, max_length: int, pad_id: int, inputs: list[str]) -> list[dict[str, Any]]:
    """Cut every learned position table of `model` (in place) to the rows inputs of at most
    `max_length` tokens read; one record {module, rows, of} per table cut ([] when none is longer than
    it needs). Raises ExportError, the model restored, when the trimmed model's logits differ from the
    original's on the full-length probe batch."""
    import torch

    tables = _tables(model)
    if not tables:
        return []
    batch = _probe(model, max_length, pad_id, inputs)
    seen: dict[str, int] = {}

    def recorder(name: str) -> Any:
        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            seen[name] = max(seen.get(name, -1), int(args[0].max()))
        return hook

    handles = [m.register_forward_pre_hook(recorder(name)) for name, m in tables]
    try:
        with torch.no_grad():
            before = model(**batch).logits
    finally:
        for h in handles:
            h.remove()
    cut = []
    for name, table in tables:
        rows = seen.get(name, -1) + 1
        if rows <= 0 or rows >= table.num_embeddings:  # unused here, or every row is read
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        pad = table.padding_idx if table.padding_idx is not None and table.padding_idx < rows else None
        trimmed = torch.nn.Embedding(rows, table.embedding_dim, padding_idx=pad, dtype=table.weight.dtype)
        with torch.no_grad():
            trimmed.weight.copy_(table.weight[:rows])
        setattr(parent, attr, trimmed)
        cut.append((parent, attr, table, {"module": name, "rows": rows, "of": table.num_embeddings}))
    if not cut:
        return []
    with torch.no_grad():
        after = model(**batch).logits
    if not torch.equal(before, after):
        for parent, attr, table, _ in cut:
            setattr(parent, attr, table)
        diff = float((before - after).abs().max())
        raise ExportError(f"--trim-positions changed the model's logits (max |diff| {diff:.3g}) on a "
                          f"{max_length}-token input, so this architecture reads position rows the probe did not "
                          "see; the model was left untrimmed: export without --trim-positions")
    return [record for *_, record in cut]
