"""Vocabulary pruning: keep only the word-embedding rows a dataset uses.

Word embeddings are most of a small student (30,522 x 384 = 11.7M of a 2-layer MiniLM's 15.6M
parameters). `prune_vocab` keeps every token id that tokenizing the training (+ validation) texts
produces at least `min_count` times, every special token, and every single character of the original
vocabulary with its `##` form (so an unseen word still splits into known pieces, not [UNK]), in the
old id order. It rebuilds the WordPiece tokenizer with the kept vocabulary, slices the embedding
rows, and writes a normal checkpoint directory whose card (`edgekd.checkpoint`) records what was
kept and what it cost (`vocab_pruning`).

Why the kept texts tokenize exactly as before: WordPiece is greedy longest-match-first, so at each
position the original picked the longest vocabulary entry; that entry is kept, and no longer one
exists in a subset of the original vocabulary.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.checkpoint import Checkpoint, card_max_length, write_card
from edgekd.errors import ModelError
from edgekd.verify.parity import accuracy

if TYPE_CHECKING:
    from edgekd.data import Splits


SUPPORTED = "BERT-family checkpoints with a WordPiece tokenizer.json (BERT, MiniLM, DistilBERT, ELECTRA)"
# Config keys holding token ids; each present one is remapped to the pruned vocabulary.
TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")
# Tokenizer files rewritten here; the checkpoint's other tokenizer files are not copied.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def check_prunable(model_dir: Path, verb: str = "prune-vocab") -> dict[str, Any]:
    """The checkpoint's tokenizer.json as a dict; `ModelError` (naming what `verb` supports) when it
    is not a checkpoint with a BERT-family WordPiece tokenizer. Reads JSON only, loads no model."""
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"'{model_dir}' is not a checkpoint (no config.json); {verb} supports {SUPPORTED}")
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"'{model_dir}' has no tokenizer.json; {verb} supports {SUPPORTED}")
    spec = json.loads(path.read_text(encoding="utf-8"))
    kind = (spec.get("model") or {}).get("type")
    post = (spec.get("post_processor") or {}).get("type")
    if kind != "WordPiece" or post not in ("TemplateProcessing", "BertProcessing"):
        raise ModelError(f"'{model_dir}' has a {kind} tokenizer with a {post} post-processor; "
                         f"{verb} supports {SUPPORTED}")
    vocab = spec["model"]["vocab"]
    outside = [t["content"] for t in spec.get("added_tokens", []) if vocab.get(t["content"]) != t["id"]]
    if outside:
        raise ModelError(f"'{model_dir}' has added tokens outside its WordPiece vocabulary ({outside[:5]}); "
                         f"{verb} supports {SUPPORTED} whose added tokens are vocabulary entries")
    return spec


def token_counts(tokenizer: Any, texts: list[str]) -> Counter[int]:
    """How often each token id occurs when `texts` are tokenized whole (no truncation, no specials)."""
    counts: Counter[int] = Counter()
    for enc in tokenizer.encode_batch(texts, add_special_tokens=False):
        counts.update(enc.ids)
    return counts


def kept_ids(spec: dict[str, Any], counts: Counter[int], min_count: int) -> list[int]:
    """Old ids to keep, ascending: tokens seen >= min_count times, special tokens, single characters
    (with and without the continuing-subword prefix)."""
    model = spec["model"]
    prefix = model.get("continuing_subword_prefix") or "##"
    keep = {i for i, c in counts.items() if c >= min_count}
    keep |= {t["id"] for t in spec.get("added_tokens", [])}
    keep.add(model["vocab"][model["unk_token"]])
    for token, i in model["vocab"].items():
        body = token[len(prefix):] if token.startswith(prefix) and len(token) > len(prefix) else token
        if len(body) == 1:
            keep.add(i)
    return sorted(keep)


def build_tokenizer(original: Any, spec: dict[str, Any], keep: list[int]) -> Any:
    """A `tokenizers.Tokenizer` with the original normalizer, pre-tokenizer, decoder and truncation, a
    WordPiece model over the kept tokens (new id = position in `keep`), and the special tokens'
    ids remapped in the post-processor and the added tokens."""
    old = {i: t for t, i in spec["model"]["vocab"].items()}
    return wordpiece_tokenizer(original, spec, {old[i]: new for new, i in enumerate(keep)})


def wordpiece_tokenizer(original: Any, spec: dict[str, Any], vocab: dict[str, int]) -> Any:
    """`original`'s pipeline (normalizer, pre-tokenizer, decoder, truncation, special tokens) around a
    WordPiece model over `vocab` ({token: new id}, which must hold every special token)."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.processors import BertProcessing, TemplateProcessing

    m = spec["model"]
    tok = Tokenizer(WordPiece(vocab, unk_token=m["unk_token"], max_input_chars_per_word=m["max_input_chars_per_word"],
                              continuing_subword_prefix=m["continuing_subword_prefix"]))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = original.normalizer, original.pre_tokenizer, original.decoder
    post = spec["post_processor"]
    if post["type"] == "BertProcessing":
        tok.post_processor = BertProcessing(sep=(post["sep"][0], vocab[post["sep"][0]]),
                                            cls=(post["cls"][0], vocab[post["cls"][0]]))
    else:
        tok.post_processor = TemplateProcessing(
            single=[_piece(p) for p in post["single"]], pair=[_piece(p) for p in post["pair"]],
            special_tokens=[(name, vocab[name]) for name in post["special_tokens"]])
    tok.add_special_tokens([AddedToken(t["content"], single_word=t["single_word"], lstrip=t["lstrip"],
                                       rstrip=t["rstrip"], normalized=t["normalized"], special=t["special"])
                            for t in spec.get("added_tokens", [])])
    if original.truncation:
        tok.enable_truncation(**{k: v for k, v in original.truncation.items() if k != "direction"},
                              direction=original.truncation.get("direction", "right"))
    return tok


def _piece(p: dict[str, Any]) -> str:
    """A TemplateProcessing piece as its template string (`[CLS]:0`, `$A:0`)."""
    if "SpecialToken" in p:
        return f"{p['SpecialToken']['id']}:{p['SpecialToken']['type_id']}"
    return f"${p['Sequence']['id']}:{p['Sequence']['type_id']}"


def slice_embeddings(model: Any, keep: list[int]) -> None:
    """Keep the word-embedding rows `keep` (in order) of the input embeddings and of the output
    (MLM) layer, if any; tied weights stay tied. Updates config.vocab_size and the token-id keys."""
    import torch

    index = torch.tensor(keep, dtype=torch.long)
    remap = {old: new for new, old in enumerate(keep)}
    old_in = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is old_in.weight
    pad = remap.get(model.config.pad_token_id) if model.config.pad_token_id is not None else None
    new_in = torch.nn.Embedding(len(keep), old_in.embedding_dim, padding_idx=pad)
    with torch.no_grad():
        new_in.weight.copy_(old_in.weight[index])
    model.set_input_embeddings(new_in)
    if out is not None:
        old_bias = out.bias
        out.weight = new_in.weight if tied else torch.nn.Parameter(out.weight.detach()[index].clone())
        out.out_features = len(keep)
        if old_bias is not None:
            new_bias = torch.nn.Parameter(old_bias.detach()[index].clone())
            for module in model.modules():  # BERT's MLM head shares the decoder bias with its parent
                if getattr(module, "bias", None) is old_bias:
                    module.bias = new_bias
    model.config.vocab_size = len(keep)
    for key in TOKEN_ID_KEYS:
        value = getattr(model.config, key, None)
        if value is not None:
            if value not in remap:
                raise ModelError(f"config.{key} = {value} is not a kept token; it must be a special token")
            setattr(model.config, key, remap[value])


def text_stats(tokenizer: Any, texts: list[str], unk_id: int) -> dict[str, float]:
    """[UNK] share of all tokens and mean tokens per text (whole texts, no special tokens)."""
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    total = sum(len(e.ids) for e in encs)
    unk = sum(e.ids.count(unk_id) for e in encs)
    return {"unk_rate": unk / max(total, 1), "tokens_per_text": total / max(len(texts), 1)}


def same_tokens_share(a: Any, b: Any, texts: list[str]) -> tuple[float, list[int]]:
    """Share of `texts` that `a` and `b` split into the same token strings, and the differing rows."""
    ta = a.encode_batch(texts, add_special_tokens=False)
    tb = b.encode_batch(texts, add_special_tokens=False)
    differ = [i for i, (x, y) in enumerate(zip(ta, tb, strict=True)) if x.tokens != y.tokens]
    return 1.0 - len(differ) / max(len(texts), 1), differ


def write_tokenizer_files(model_dir: Path, out: Path, tok: Any, tokens: list[str]) -> None:
    """tokenizer.json, vocab.txt (`tokens`, the new vocabulary in id order), tokenizer_config.json
    (added-token ids remapped by content) and special_tokens_map.json in `out`, consistent so
    `AutoTokenizer.from_pretrained(out)` loads them."""
    tok.save(str(out / "tokenizer.json"))
    (out / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    new_id = {t: i for i, t in enumerate(tokens)}
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if "added_tokens_decoder" in config:
        config["added_tokens_decoder"] = {str(new_id[v["content"]]): v for v in config["added_tokens_decoder"].values()}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    if (model_dir / "special_tokens_map.json").is_file():
        shutil.copyfile(model_dir / "special_tokens_map.json", out / "special_tokens_map.json")


def prune_vocab(model_dir: Path, splits: Splits, out: Path, min_count: int,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prune `model_dir`'s vocabulary to what `splits.train` + `splits.validation` use and write the
    pruned checkpoint to `out` (which must not exist). Returns the card's `vocab_pruning` record.
    Raises `ModelError` when min_count < 1, the checkpoint is not supported, or (at min_count 1) a
    training text tokenizes differently after pruning."""
    from tokenizers import Tokenizer

    if min_count < 1:
        raise ModelError(f"--min-count must be at least 1, got {min_count}")
    spec = check_prunable(model_dir)
    original = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    fit_texts = list(splits.train.texts) + list(splits.validation.texts)
    before = untruncated(original)
    keep = kept_ids(spec, token_counts(before, fit_texts), min_count)
    pruned = build_tokenizer(original, spec, keep)
    after = untruncated(pruned)
    same, differ = same_tokens_share(before, after, fit_texts)
    if min_count == 1 and differ:
        raise ModelError(f"pruning changed the tokens of {len(differ)} training texts (first: "
                         f"{fit_texts[differ[0]][:80]!r}); this is a bug, nothing was written")
    log(f"vocabulary {len(spec['model']['vocab']):,} -> {len(keep):,} tokens (min_count {min_count})")

    checkpoint = Checkpoint(model_dir)
    max_length = card_max_length(checkpoint.card)
    model, tokenizer = checkpoint.model(), checkpoint.tokenizer()
    test = splits.test
    reference = _logits(model, tokenizer, test.texts, max_length)
    params_before = sum(p.numel() for p in model.parameters())
    slice_embeddings(model, keep)
    # Written to a staging directory renamed into place at the end: a failed check leaves no checkpoint.
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    old = {i: t for t, i in spec["model"]["vocab"].items()}
    write_tokenizer_files(model_dir, staging, pruned, [old[i] for i in keep])
    written = Checkpoint(staging)
    got_model, got_tokenizer = written.model(), written.tokenizer()
    check_reload(got_tokenizer, after, fit_texts[:256])
    logits = _logits(got_model, got_tokenizer, test.texts, max_length)
    unk = spec["model"]["vocab"][spec["model"]["unk_token"]]
    record = {
        "original_vocab_size": len(spec["model"]["vocab"]), "vocab_size": len(keep), "min_count": min_count,
        "fit_texts": len(fit_texts), "fit_texts_same_tokens": same,
        "test_texts": len(test.texts),
        "test_before": text_stats(before, test.texts, unk),
        "test_after": text_stats(after, test.texts, keep.index(unk)),
        "accuracy_unpruned": accuracy(reference, test.labels, empty=None),
        "accuracy": accuracy(logits, test.labels, empty=None),
        "agreement": float((reference.argmax(1) == logits.argmax(1)).mean()) if len(test.texts) else None,
        "params_before": params_before, "params_after": sum(p.numel() for p in got_model.parameters()),
        "weights_bytes_before": _weights_bytes(model_dir), "weights_bytes_after": _weights_bytes(staging),
    }
    write_card(staging, {**checkpoint.card, "pruned_from": str(model_dir), "vocab_pruning": record})
    staging.rename(out)
    return record


def untruncated(tokenizer: Any) -> Any:
    """A copy of `tokenizer` that neither truncates nor pads (statistics over whole texts)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def check_reload(loaded: Any, pruned: Any, texts: list[str]) -> None:
    """The written checkpoint's tokenizer, as transformers loads it, gives the pruned tokenizer's ids."""
    want = [e.ids for e in pruned.encode_batch(texts)]
    got = loaded(texts, truncation=False)["input_ids"]
    if got != want:
        raise ModelError("the pruned checkpoint's tokenizer reloads with different ids; this is a bug")


def _logits(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> np.ndarray:
    from edgekd.train.infer import torch_logits

    return torch_logits(model, tokenizer, texts, max_length, batch_size=64)


def _weights_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
