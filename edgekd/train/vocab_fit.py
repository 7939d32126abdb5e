"""How well a model's vocabulary reads a dataset's texts, measured before training, recorded in the card
(`vocabulary_fit`) and warned about when it reads them nearly letter by letter (an English vocabulary on
Arabic, say): then `max_length` tokens cover only a sliver of each text and fine-tuning has little to
work with. The fix is a vocabulary trained on the data (`edgekd adapt-vocab`, `teacher.vocab_size`).

Measured with the MiniLM (bert-base-uncased) tokenizer on the first 1,000 training texts of each dataset
in ../shared/data: word pieces per whitespace word 1.37 (ag_news), 1.20 (sst2), 1.33 (imdb) and 4.94
(arabic_news_ant, title + text; 821 tokens per 1,000 characters, so 128 tokens cover ~155 characters);
with an 8,000-token vocabulary adapted on 2,400 Arabic articles: ~1.55 (258 tokens per 1,000 characters).
`PIECES_PER_WORD_WARN` = 2.5 sits between the two groups with room on both sides. Torch-free.
"""

from __future__ import annotations

from typing import Any

PIECES_PER_WORD_WARN = 2.5  # word pieces per whitespace word above which the vocabulary does not fit
UNK_SHARE_WARN = 0.01  # [UNK] share of tokens above which characters of the data are unknown to it
SAMPLE = 1000  # training texts measured (the first ones: fixed, cheap)


def vocabulary_fit(tokenizer: Any, texts: list[str], max_length: int, sample: int = SAMPLE) -> dict[str, Any]:
    """{pieces_per_word, tokens_per_1000_chars, unk_share, truncated_share, chars_covered, texts} of the
    first `sample` texts under a Hugging Face tokenizer (no special tokens, no truncation);
    `chars_covered`: characters a `max_length` window holds at that rate (2 special tokens left out)."""
    texts = [t for t in texts[:sample] if t.strip()]
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"] if texts else []
    tokens, chars, words = sum(map(len, ids)), sum(map(len, texts)), sum(len(t.split()) for t in texts)
    unk = getattr(tokenizer, "unk_token_id", None)
    per_1000 = 1000 * tokens / max(chars, 1)
    return {"texts": len(texts), "pieces_per_word": round(tokens / max(words, 1), 3),
            "tokens_per_1000_chars": round(per_1000, 1),
            "unk_share": round(sum(i.count(unk) for i in ids) / max(tokens, 1), 5) if unk is not None else 0.0,
            "truncated_share": round(sum(len(i) > max_length - 2 for i in ids) / max(len(ids), 1), 4),
            "chars_covered": round((max_length - 2) * 1000 / per_1000) if per_1000 else None,
            "max_length": max_length}


def fit_warning(fit: dict[str, Any]) -> str | None:
    """One line when the vocabulary does not fit the texts (None when it does)."""
    found = []
    if fit["pieces_per_word"] > PIECES_PER_WORD_WARN:
        found.append(f"the tokenizer splits these texts into {fit['pieces_per_word']:.1f} pieces per word (a vocabulary "
                     f"made for the language: ~1.2-1.6), so max_length {fit['max_length']} covers ~{fit['chars_covered']} "
                     f"characters of a text")
    if fit["unk_share"] > UNK_SHARE_WARN:
        found.append(f"{100 * fit['unk_share']:.1f}% of their tokens are [UNK] (characters the vocabulary lacks)")
    if not found:
        return None
    return ("; ".join(found) + ": give the model a vocabulary trained on this data first (edgekd adapt-vocab MODEL "
            "--data D --size 16000 --out BASE, then --model BASE; in a recipe: teacher.vocab_size: 16000)")
