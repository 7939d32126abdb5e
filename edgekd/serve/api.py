"""The `/predict` request and response, as plain data: parse and check a request body, shape the
answer. No web framework here, so every rule is testable on bytes alone.

Request (Hugging Face text-classification shape):
    {"inputs": "text" | ["text", ...],
     "parameters": {"top_k": int | null, "function_to_apply": "softmax" | "sigmoid" | "none"}}
Response: for a str input, a list of {"label", "score"} sorted by score (highest first); for a list
input, one such list per text, in input order. `top_k` omitted or null: every label.

Errors are `RequestError(status, message)`: too much (body, texts, characters) -> 413; not JSON or not
UTF-8 -> 400; JSON of the wrong shape (wrong types, unknown keys, empty text) -> 422.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekd.runtimes.classifier import softmax


@dataclass(frozen=True)
class Limits:
    """What one request may carry; a request over any of them gets a 413 naming the limit."""

    # 1 MiB: 64 texts of 10,000 ASCII characters fit, with room for JSON escaping.
    max_body_bytes: int = 1 << 20
    # A batch beyond 64 texts gains no throughput on a CPU and holds a worker thread for longer.
    max_texts: int = 64
    # The model reads at most max_length tokens (<= 512, ~2,500 characters of English); a longer text
    # costs tokenizer time for words that are then dropped.
    max_text_chars: int = 10_000


LIMITS = Limits()

# function_to_apply -> logits [n, num_labels] -> scores [n, num_labels] (as in transformers' pipeline).
SCORE_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": softmax,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))),
    "none": lambda x: np.asarray(x, dtype=np.float64),
}
# Top-level keys a body may have; "options" (the hosted Inference API's wait_for_model/use_cache) is
# accepted and ignored so that Hugging Face clients work unchanged.
BODY_KEYS = ("inputs", "parameters", "options")
PARAMETER_KEYS = ("top_k", "function_to_apply")


class RequestError(Exception):
    """A request the server refuses: HTTP status and a message naming the problem and the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    single: bool  # the body's inputs was one str (the answer is one list, not a list of lists)
    top_k: int | None
    function_to_apply: str = "softmax"


def parse_predict(body: bytes, limits: Limits = LIMITS) -> PredictRequest:
    """Check a `/predict` body and return what to run; `RequestError` naming the first problem."""
    doc = _json_object(body, limits)
    unknown = sorted(set(doc) - set(BODY_KEYS))
    if unknown:
        raise RequestError(422, f"unknown key(s) {unknown} in the body; it takes: {', '.join(BODY_KEYS)}")
    if "inputs" not in doc:
        raise RequestError(422, 'the body has no "inputs"; send {"inputs": "some text"} or {"inputs": ["a", "b"]}')
    inputs = doc["inputs"]
    single = isinstance(inputs, str)
    texts = [inputs] if single else inputs
    if not isinstance(texts, list):
        raise RequestError(422, f'"inputs" must be a string or a list of strings, got {_json_type(inputs)}')
    if not texts:
        raise RequestError(422, '"inputs" is an empty list; send at least one text')
    if len(texts) > limits.max_texts:
        raise RequestError(413, f'"inputs" has {len(texts)} texts; at most {limits.max_texts} per request '
                                "(split them over several requests)")
    for i, text in enumerate(texts):
        _check_text(text, "inputs" if single else f"inputs[{i}]", limits)
    top_k, function = _parameters(doc.get("parameters"))
    return PredictRequest(texts=texts, single=single, top_k=top_k, function_to_apply=function)


def predictions(logits: np.ndarray, labels: list[str], request: PredictRequest) -> list[Any]:
    """The response body: per text, [{"label", "score"}] sorted by score (ties in label order),
    cut to top_k; one list for a single text, a list of lists otherwise."""
    scores = SCORE_FUNCTIONS[request.function_to_apply](logits)  # [n, num_labels] float64
    k = len(labels) if request.top_k is None else min(request.top_k, len(labels))
    out = []
    for row in scores.tolist():
        order = sorted(range(len(labels)), key=lambda j: -row[j])[:k]  # stable: ties keep label order
        out.append([{"label": labels[j], "score": row[j]} for j in order])
    return out[0] if request.single else out


def _json_object(body: bytes, limits: Limits) -> dict[str, Any]:
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the body is {len(body)} bytes; at most {limits.max_body_bytes}")
    if not body.strip():
        raise RequestError(400, 'the body is empty; send JSON such as {"inputs": "some text"}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}); "
                                "encode the JSON as UTF-8") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise RequestError(400, "the body's JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise RequestError(422, f'the body must be a JSON object such as {{"inputs": "some text"}}, got {_json_type(doc)}')
    return doc


def _check_text(text: object, where: str, limits: Limits) -> None:
    if not isinstance(text, str):
        raise RequestError(422, f"{where} must be a string, got {_json_type(text)}")
    if len(text) > limits.max_text_chars:
        raise RequestError(413, f"{where} has {len(text)} characters; at most {limits.max_text_chars} per text "
                                "(the model reads only its first tokens anyway)")
    if not text.strip():
        raise RequestError(422, f"{where} is empty; send some text to classify")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a JSON escape such as "\ud800" decodes to a lone surrogate
        raise RequestError(422, f"{where} is not valid Unicode (a lone surrogate at position {exc.start}); "
                                "send UTF-8 text") from None


def _parameters(params: object) -> tuple[int | None, str]:
    if params is None:
        return None, "softmax"
    if not isinstance(params, dict):
        raise RequestError(422, f'"parameters" must be an object such as {{"top_k": 2}}, got {_json_type(params)}')
    unknown = sorted(set(params) - set(PARAMETER_KEYS))
    if unknown:
        raise RequestError(422, f"unknown parameter(s) {unknown}; allowed: {', '.join(PARAMETER_KEYS)}")
    top_k = params.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(422, f'"top_k" must be a positive integer or null (every label), got {json.dumps(top_k)}')
    function = params.get("function_to_apply")
    function = "softmax" if function is None else function
    if not isinstance(function, str) or function not in SCORE_FUNCTIONS:
        raise RequestError(422, f'"function_to_apply" must be one of {", ".join(SCORE_FUNCTIONS)}, '
                                f"got {json.dumps(function)}")
    return top_k, function


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, as a client wrote it."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
