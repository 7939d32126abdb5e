"""Vocabulary adaptation: a native WordPiece vocabulary for a new language (FVT, Gee et al. 2022).

`adapt_vocab(model_ref, splits, out, size)` trains a WordPiece vocabulary of `size` tokens on the
training texts with the base model's own normalizer and pre-tokenizer (the `tokenizers` trainer),
initialises each new token's embedding as the mean of the base model's embeddings of the pieces the
base tokenizer splits it into (Fast Vocabulary Transfer), keeps every transformer layer, and writes a
base checkpoint for `edgekd train --model OUT` (students distilled from that teacher inherit the
vocabulary). Its card (`edgekd.checkpoint`) records what was done under `vocab_adaptation`.

The new vocabulary, in id order: the base model's special tokens (in their old order), every character
of the alphabet (the corpus's characters plus the printable ASCII ones the base vocabulary has) with and
without the `##` prefix, so an unseen word splits into characters and never becomes [UNK] when its
characters are known, then the learned tokens in the order the trainer learned them, cut at `size`.
"""

from __future__ import annotations

import shutil
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.checkpoint import Checkpoint, read_card, update_card, write_card
from edgekd.errors import ModelError
from edgekd.train.mlm import MlmConfig
from edgekd.train.vocab import (
    TOKEN_ID_KEYS,
    check_prunable,
    check_reload,
    untruncated,
    wordpiece_tokenizer,
    write_tokenizer_files,
)

if TYPE_CHECKING:
    from edgekd.data import Splits


# A learned token occurs at least this often in the corpus (the trainer's min_frequency): a token seen
# once is a word the model will rarely meet again.
MIN_FREQUENCY = 2
# Warn when more than this share of the corpus's characters are unknown to the base model: the tokens
# holding them start from the [UNK] embedding, and only fine-tuning gives them a meaning.
UNKNOWN_CHARS_WARN = 0.01
# Kept in the alphabet whatever the corpus holds (digits, Latin letters, punctuation: names, numbers and
# URLs turn up in text of every language).
ALWAYS = frozenset(c for c in string.printable if not c.isspace())
MIN_SIZE = 100
# Peak learning rate of the word embeddings when fine-tuning starts from a fresh adapt-vocab base. FVT
# makes a new word the mean of its old pieces; under an English vocabulary the pieces of an Arabic word are
# single letters, so each word starts as a bag of letters. At the body's 5e-5 to 1e-4 those rows hardly
# move in a few hundred steps and the classifier stays near the majority class (arabic_news_ant slice:
# 0.36-0.51 accuracy); a separate, higher rate for that one matrix lets them learn the words. Measured in
# benchmarks/RESULTS.md (section adapt, the embedding learning-rate sweep).
ADAPTED_EMBEDDING_LR = 3e-3
VERB = "adapt-vocab"


def corpus_chars(tokenizer: Any, texts: list[str]) -> Counter[str]:
    """How often each character occurs in `texts` after the tokenizer's normalizer (no whitespace)."""
    counts: Counter[str] = Counter()
    normalize = tokenizer.normalizer.normalize_str if tokenizer.normalizer else (lambda s: s)
    for text in texts:
        counts.update(normalize(text))
    for space in [c for c in counts if c.isspace()]:
        del counts[space]
    return counts


def base_chars(spec: dict[str, Any]) -> set[str]:
    """The characters the base vocabulary holds as one-character tokens (with or without the prefix)."""
    prefix = spec["model"].get("continuing_subword_prefix") or "##"
    bodies = (t[len(prefix):] if t.startswith(prefix) and len(t) > len(prefix) else t for t in spec["model"]["vocab"])
    return {b for b in bodies if len(b) == 1}


def check_characters(chars: Counter[str], known: set[str], model_ref: str, log: Callable[[str], None]) -> float:
    """The share of character occurrences the base model has never seen; `ModelError` when it has seen
    none of them (FVT has nothing to transfer), a warning above UNKNOWN_CHARS_WARN."""
    total = sum(chars.values())
    if total == 0:
        raise ModelError("the training texts are empty after normalisation; check --text-column")
    unknown = sum(n for c, n in chars.items() if c not in known)
    share = unknown / total
    if unknown == total:
        raise ModelError(f"none of the training texts' characters (e.g. {''.join(list(chars)[:10])!r}) are in "
                         f"'{model_ref}''s vocabulary, so its embeddings have nothing to give the new tokens; use a "
                         "base model whose vocabulary covers this script (e.g. a multilingual BERT checkpoint, "
                         "--model DIR), or check --text-column")
    if share > UNKNOWN_CHARS_WARN:
        top = "".join(c for c, _ in Counter({c: n for c, n in chars.items() if c not in known}).most_common(10))
        log(f"warning: {share:.1%} of the training texts' characters are unknown to '{model_ref}' (most frequent: "
            f"{top!r}); tokens holding them start from the [UNK] embedding and learn only in fine-tuning. A base "
            "model whose vocabulary covers this script transfers more (--model DIR)")
    return share


def train_wordpiece(original: Any, spec: dict[str, Any], texts: list[str], size: int,
                    alphabet: set[str]) -> list[str]:
    """The new vocabulary in id order (specials, alphabet in both forms, learned tokens), `size` long.
    `ModelError` naming the size that fits when `size` is below what the specials and alphabet take, or
    above what the corpus yields."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer

    m = spec["model"]
    prefix = m.get("continuing_subword_prefix") or "##"
    specials = [t["content"] for t in sorted(spec.get("added_tokens", []), key=lambda t: t["id"])]
    if m["unk_token"] not in specials:
        specials.insert(0, m["unk_token"])
    letters = sorted(alphabet)
    base = specials + letters + [prefix + c for c in letters]
    if size <= len(base):
        raise ModelError(f"--size {size} leaves no room for learned tokens: the special tokens and the corpus's "
                         f"{len(letters)} characters (with and without {prefix}) take {len(base)}; use --size "
                         f"{_round_up(len(base) + MIN_SIZE)} or more")
    tok = Tokenizer(WordPiece(unk_token=m["unk_token"], continuing_subword_prefix=prefix,
                              max_input_chars_per_word=m["max_input_chars_per_word"]))
    tok.normalizer, tok.pre_tokenizer = original.normalizer, original.pre_tokenizer
    trainer = WordPieceTrainer(vocab_size=size, min_frequency=MIN_FREQUENCY, special_tokens=specials,
                               initial_alphabet=letters, continuing_subword_prefix=prefix, show_progress=False)
    tok.train_from_iterator(texts, trainer, length=len(texts))
    seen = set(base)
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]) if t not in seen]
    if len(base) + len(learned) < size:
        fits = len(base) + len(learned)
        raise ModelError(f"the training corpus ({len(texts):,} texts) yields only {fits:,} tokens that occur at least "
                         f"{MIN_FREQUENCY} times, fewer than --size {size}; use --size {_round_down(fits)} or "
                         "less, or train the vocabulary on more text (more rows, no --max-train-samples)")
    return base + learned[: size - len(base)]


def old_pieces(token: str, vocab: dict[str, int], prefix: str, max_chars: int) -> list[int] | None:
    """The base vocabulary's ids for `token` by WordPiece's greedy longest-match-first, as the base
    tokenizer splits it (a `##` token continues a word); None when a character is unknown there (the
    base tokenizer gives [UNK])."""
    if token in vocab:
        return [vocab[token]]
    continuation = token.startswith(prefix) and len(token) > len(prefix)
    body = token[len(prefix):] if continuation else token
    if len(body) > max_chars:
        return None
    ids, start = [], 0
    while start < len(body):
        end = len(body)
        while end > start:
            piece = body[start:end] if start == 0 and not continuation else prefix + body[start:end]
            if piece in vocab:
                ids.append(vocab[piece])
                break
            end -= 1
        if end == start:
            return None
        start = end
    return ids


def fvt_embeddings(old: np.ndarray, tokens: list[str], spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
    """[len(tokens), dim] rows: each token's row is the mean of the old rows `old_pieces` gives (one
    piece: copied), the [UNK] row when it has none; and how many tokens took each route."""
    m = spec["model"]
    vocab, prefix, unk = m["vocab"], m.get("continuing_subword_prefix") or "##", m["vocab"][m["unk_token"]]
    rows = np.empty((len(tokens), old.shape[1]), dtype=old.dtype)
    routes = {"copied": 0, "mean_of_pieces": 0, "unk": 0}
    for i, token in enumerate(tokens):
        ids = old_pieces(token, vocab, prefix, m["max_input_chars_per_word"])
        routes["unk" if ids is None else "copied" if len(ids) == 1 else "mean_of_pieces"] += 1
        rows[i] = old[ids or [unk]].mean(axis=0)
    return rows, routes


def replace_embeddings(model: Any, rows: np.ndarray, tokens: list[str], spec: dict[str, Any]) -> None:
    """Give `model` the input embeddings `rows` (tokens in id order); config.vocab_size and the token-id
    keys (pad, ...) follow the tokens to their new ids."""
    import torch

    new_id = {t: i for i, t in enumerate(tokens)}
    old_token = {i: t for t, i in spec["model"]["vocab"].items()}
    remap = {}
    for key in TOKEN_ID_KEYS:
        value = getattr(model.config, key, None)
        if value is not None:
            if old_token.get(value) not in new_id:
                raise ModelError(f"config.{key} = {value} ({old_token.get(value)!r}) is not in the new vocabulary; "
                                 "it must be a special token of the base tokenizer")
            remap[key] = new_id[old_token[value]]
    embedding = torch.nn.Embedding(len(tokens), rows.shape[1], padding_idx=remap.get("pad_token_id"))
    with torch.no_grad():
        embedding.weight.copy_(torch.from_numpy(rows))
    model.set_input_embeddings(embedding)
    model.config.vocab_size = len(tokens)
    for key, value in remap.items():
        setattr(model.config, key, value)


def tokens_per_1000_chars(tokenizer: Any, texts: list[str], unk_id: int) -> dict[str, float]:
    """Tokens per 1,000 characters and the [UNK] share of tokens, whole texts, no special tokens."""
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    total = sum(len(e.ids) for e in encs)
    return {"tokens_per_1000_chars": 1000 * total / max(sum(map(len, texts)), 1),
            "unk_rate": sum(e.ids.count(unk_id) for e in encs) / max(total, 1)}


def adapt_vocab(model_ref: str, splits: Splits, out: Path, size: int,
                log: Callable[[str], None] = print, mlm: MlmConfig | None = None, seed: int = 42) -> dict[str, Any]:
    """Write to `out` (which must not exist) `model_ref` with a `size`-token WordPiece vocabulary trained
    on `splits.train`, every new embedding initialised by FVT, then (`mlm` with epochs > 0) masked-LM
    pre-training on the training texts (`train.mlm`, seeded by `seed`). Returns the card's `vocab_adaptation`.
    `ModelError` before any model loads when the model is not a BERT-family WordPiece one, `size` does
    not fit the corpus, or the base model knows none of the corpus's characters."""
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from edgekd.models import resolve_model

    if size < MIN_SIZE:
        raise ModelError(f"--size must be at least {MIN_SIZE}, got {size}")
    path = Path(resolve_model(model_ref))
    spec = check_prunable(path, VERB)
    original = Tokenizer.from_file(str(path / "tokenizer.json"))
    texts = list(splits.train.texts)
    chars = corpus_chars(original, texts)
    known = base_chars(spec)
    unknown_share = check_characters(chars, known, model_ref, log)
    alphabet = set(chars) | (ALWAYS & known)
    tokens = train_wordpiece(untruncated(original), spec, texts, size, alphabet)
    adapted = wordpiece_tokenizer(original, spec, {t: i for i, t in enumerate(tokens)})
    log(f"trained a {len(tokens):,}-token WordPiece vocabulary on {len(texts):,} texts "
        f"({len(alphabet):,} characters)")

    model = AutoModel.from_pretrained(str(path))
    old_rows = model.get_input_embeddings().weight.detach().numpy()
    rows, routes = fvt_embeddings(old_rows, tokens, spec)
    replace_embeddings(model, rows, tokens, spec)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    write_tokenizer_files(path, staging, adapted, tokens)
    from transformers import AutoTokenizer

    check_reload(AutoTokenizer.from_pretrained(staging), untruncated(adapted), texts[:256])
    held_out = list(splits.validation.texts) or texts
    unk_old, unk_new = spec["model"]["vocab"][spec["model"]["unk_token"]], tokens.index(spec["model"]["unk_token"])
    record = {
        "method": "fvt (Gee et al. 2022): each new token's embedding = mean of the base embeddings of its base pieces",
        "base_model": model_ref, "base_model_path": str(path), "requested_size": size, "vocab_size": len(tokens),
        "original_vocab_size": len(spec["model"]["vocab"]), "min_frequency": MIN_FREQUENCY,
        "corpus_rows": len(texts), "corpus_chars": sum(map(len, texts)), "alphabet_size": len(alphabet),
        "unknown_char_share": round(unknown_share, 6), "init": routes,
        "measured_on": f"validation split, {len(held_out):,} texts" if splits.validation.texts else "training texts",
        "before": tokens_per_1000_chars(untruncated(original), held_out, unk_old),
        "after": tokens_per_1000_chars(untruncated(adapted), held_out, unk_new),
        "layers_kept": model.config.num_hidden_layers,
    }
    if mlm is not None and mlm.epochs > 0:
        from edgekd.train.mlm import continue_pretraining

        try:
            record["mlm"] = continue_pretraining(staging, texts, list(splits.validation.texts), mlm, seed, log)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # nothing half-written left behind
            raise
    write_card(staging, {"role": "base", "base_model": model_ref, "vocab_adaptation": record})
    staging.rename(out)
    return record


def swapped_embedding_lr(lr: float) -> float:
    """The word embeddings' rate on a fresh vocabulary swap (FVT rows) when the body trains at `lr`: the
    fine-tune from an adapt-vocab base (`embedding_lr_for`) and adapt-vocab's own masked-LM step."""
    return max(lr, ADAPTED_EMBEDDING_LR)


def embedding_lr_for(lr: float, embedding_lr: float | None, model_path: Path | str) -> tuple[float, str]:
    """(peak learning rate of the word embeddings, why) for fine-tuning the model at `model_path` with
    body learning rate `lr`: `embedding_lr` when the user set it; ADAPTED_EMBEDDING_LR when the model is a
    fresh `adapt-vocab` base (card role `base` with `vocab_adaptation`: its rows are FVT estimates, not
    trained ones); else `lr` (pretrained or already fine-tuned rows, such as a student's from its teacher)."""
    if embedding_lr is not None:
        return embedding_lr, "set by --embedding-lr"
    card = read_card(model_path) if Path(model_path).is_dir() else {}
    if card.get("role") == "base" and "vocab_adaptation" in card:
        rate = swapped_embedding_lr(lr)
        return rate, (f"{rate:g}: the vocabulary was swapped by adapt-vocab, so its embeddings are FVT estimates "
                      "that must move far; at the body's rate they barely do")
    return lr, "the body's rate: the embeddings are pretrained or already fine-tuned"


def inherit(out: Path, source: Path | Checkpoint) -> None:
    """Copy `vocab_adaptation` from `source`'s card (a teacher's base model, a student's teacher) into the
    card already written in `out`: every checkpoint trained from an adapted model says what was done."""
    record = (source.card if isinstance(source, Checkpoint) else read_card(source)).get("vocab_adaptation")
    if record is not None:
        update_card(out, vocab_adaptation=record)


def _round_down(n: int) -> int:
    return max(MIN_SIZE, n // 1000 * 1000 if n >= 2000 else n // 100 * 100)


def _round_up(n: int) -> int:
    return -(-n // 100) * 100
