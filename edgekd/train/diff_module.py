"""The differential self-attention module and its ramp callback (torch; see `diff_attention` for the
formula, the conversion grammar and why the paper's norm is optional)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from edgekd.errors import ModelError
from edgekd.train.diff_attention import LAMBDA_STD, NORM_EPS, lambda_init


class DiffSelfAttention(nn.Module):
    """Drop-in for a BERT-style `attention.self`: same call signature, same (context, probs) output.

    Parameter names of the positive branch (`query`, `key`, `value`) are the original ones, so a
    converted checkpoint keeps every pre-trained key; DIFF_NAMES are the keys the conversion adds."""

    DIFF_NAMES = ("query2", "key2", "lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2", "lambda_init", "ramp",
                  "subln")

    def __init__(self, original: nn.Module, depth: int, norm: bool = False, init: str = "copy") -> None:
        super().__init__()
        if getattr(original, "position_embedding_type", "absolute") != "absolute" or getattr(
                original, "is_decoder", False):
            raise ModelError("differential attention converts encoder self-attention with absolute positions "
                             "only; this layer uses relative positions or is a decoder: pick other layers")
        if init not in ("copy", "zeros"):
            raise ModelError(f"negative-branch init {init!r}: use copy or zeros")
        self.num_attention_heads = original.num_attention_heads
        self.attention_head_size = original.attention_head_size
        self.all_head_size = original.all_head_size
        self.query, self.key, self.value = original.query, original.key, original.value
        self.dropout = nn.Dropout(getattr(original.dropout, "p", 0.0))
        self.query2, self.key2 = copy.deepcopy(original.query), copy.deepcopy(original.key)
        if init == "zeros":
            with torch.no_grad():
                for p in (*self.query2.parameters(), *self.key2.parameters()):
                    p.zero_()
        d = self.attention_head_size
        for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
            setattr(self, name, nn.Parameter(torch.randn(d) * LAMBDA_STD))
        self.register_buffer("lambda_init", torch.tensor(lambda_init(depth)))
        # 0: the layer computes exactly the original attention; 1: the full differential term.
        self.register_buffer("ramp", torch.tensor(0.0))
        self.subln = nn.Parameter(torch.ones(d)) if norm else None  # per-head RMSNorm weight
        self.init = init
        self._frozen: tuple[tuple[int, ...], float] | None = None  # (versions, ramp * lambda) in eval

    @property
    def use_norm(self) -> bool:
        return self.subln is not None

    def lambda_full(self) -> torch.Tensor:
        """lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init (a scalar; input-independent)."""
        return (torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1))
                - torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2)) + self.lambda_init)

    def coefficient(self) -> torch.Tensor | float:
        """ramp * lambda: a tensor while training (gradients reach the lambdas); in eval a Python float,
        so a traced export (ONNX, Core ML) holds it as one constant per layer, not an Exp/ReduceSum
        graph over the lambdas (the ONNX exporter does not fold ops over initializers). The float is
        computed when the module enters eval mode, outside any trace, and again whenever a lambda or
        the ramp changed since (their version counters)."""
        if self.training:
            return self.ramp * self.lambda_full()
        if self._frozen is None or self._frozen[0] != self._versions():
            self._freeze()
        return self._frozen[1]

    def _versions(self) -> tuple[int, ...]:
        tensors = (self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2, self.ramp, self.lambda_init)
        return tuple(t._version for t in tensors) + tuple(id(t) for t in tensors)

    def _freeze(self) -> None:
        with torch.no_grad():
            self._frozen = (self._versions(), float(self.ramp * self.lambda_full()))

    def train(self, mode: bool = True) -> DiffSelfAttention:
        super().train(mode)
        if not mode:
            self._freeze()
        return self

    def _heads(self, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape  # [batch, seq, hidden] -> [batch, heads, seq, head_dim]
        return linear(x).view(b, s, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def _probs(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        if mask is not None:  # additive: [batch, 1, 1|seq, seq]
            scores = scores + mask
        return torch.softmax(scores, dim=-1)  # [batch, heads, seq, seq]

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None, encoder_hidden_states: Any = None,
                past_key_values: Any = None, output_attentions: bool = False, **kwargs: Any) -> tuple[Any, Any]:
        if encoder_hidden_states is not None or past_key_values is not None or kwargs.get("past_key_value"):
            raise ModelError("differential attention is converted for encoder self-attention only (no cross "
                             "attention, no cache)")
        b, s, _ = hidden_states.shape
        if attention_mask is not None and attention_mask.dtype == torch.bool:  # True = attend
            attention_mask = torch.zeros_like(attention_mask, dtype=hidden_states.dtype).masked_fill(
                ~attention_mask, torch.finfo(hidden_states.dtype).min)
        positive = self._probs(self._heads(self.query, hidden_states), self._heads(self.key, hidden_states),
                               attention_mask)
        negative = self._probs(self._heads(self.query2, hidden_states), self._heads(self.key2, hidden_states),
                               attention_mask)
        attn = self.dropout(positive - self.coefficient() * negative)
        if head_mask is not None:
            attn = attn * head_mask
        context = torch.matmul(attn, self._heads(self.value, hidden_states))  # [batch, heads, seq, head_dim]
        if self.subln is not None:
            rms = torch.rsqrt(context.pow(2).mean(-1, keepdim=True) + NORM_EPS)
            context = context * rms * self.subln * (1.0 - self.lambda_init)
        context = context.transpose(1, 2).reshape(b, s, self.all_head_size)
        return context, (attn if output_attentions else None)


class RampCallback(TrainerCallback):
    """Sets `ramp` of the given modules to min(1, step / (share * total steps)) before each step."""

    def __init__(self, modules: list[DiffSelfAttention], share: float) -> None:
        self.modules, self.share, self.steps = modules, share, 1

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps = max(1, round(self.share * (state.max_steps or 1)))
        self._set(state.global_step)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._set(state.global_step)

    def _set(self, step: int) -> None:
        value = min(1.0, step / self.steps)
        with torch.no_grad():
            for m in self.modules:
                m.ramp.fill_(value)
