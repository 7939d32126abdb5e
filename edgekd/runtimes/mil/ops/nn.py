"""Linear algebra, normalisation, reductions and attention MIL ops (iOS15 `linear.py`,
`normalization.py`, `reduction.py`; iOS18 `transformers.py`). Matmuls run in float32 BLAS."""

from __future__ import annotations

import numpy as np

from edgekd.runtimes.mil.ops.elementwise import softmax


def _f32(x):
    return np.asarray(x, dtype=np.float32) if np.asarray(x).dtype != np.float64 else np.asarray(x)


def linear(x, weight, bias=None):
    """x @ weight.T + bias; weight: [out, in]. Leading dims are flattened into one GEMM."""
    x, weight = _f32(x), _f32(weight)
    y = np.matmul(x.reshape(-1, x.shape[-1]), weight.T).reshape(x.shape[:-1] + (weight.shape[0],))
    return y if bias is None else y + bias


def matmul(x, y, transpose_x=False, transpose_y=False):
    """Batched matmul with numpy broadcasting; the transposes swap the last two axes."""
    x, y = _f32(x), _f32(y)
    if bool(transpose_x) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(transpose_y) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _axes(axes, ndim):
    return tuple(range(ndim)) if axes is None else tuple(int(a) % ndim for a in np.atleast_1d(axes))


def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over `axes` (population variance)."""
    x = _f32(x)
    ax = _axes(axes, x.ndim)
    mean = np.mean(x, axis=ax, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=ax, keepdims=True)
    y = centered / np.sqrt(var + epsilon)
    shape = [x.shape[i] if i in ax else 1 for i in range(x.ndim)]  # gamma/beta have x.shape[axes]
    if gamma is not None:
        y = y * np.reshape(gamma, shape)
    if beta is not None:
        y = y + np.reshape(beta, shape)
    return y


def _reduce(fn, x, axes, keep_dims):
    return fn(x, axis=_axes(axes, np.ndim(x)), keepdims=bool(keep_dims))


def reduce_sum(x, axes=None, keep_dims=False):
    return _reduce(np.sum, x, axes, keep_dims)


def reduce_mean(x, axes=None, keep_dims=False):
    return _reduce(np.mean, x, axes, keep_dims)


def reduce_max(x, axes=None, keep_dims=False):
    return _reduce(np.max, x, axes, keep_dims)


def reduce_min(x, axes=None, keep_dims=False):
    return _reduce(np.min, x, axes, keep_dims)


def reduce_prod(x, axes=None, keep_dims=False):
    return _reduce(np.prod, x, axes, keep_dims)


def reduce_sum_square(x, axes=None, keep_dims=False):
    return _reduce(np.sum, np.square(x), axes, keep_dims)


def reduce_l2_norm(x, axes=None, keep_dims=False):
    return np.sqrt(reduce_sum_square(x, axes, keep_dims))


def reduce_argmax(x, axis=-1, keep_dims=False):
    out = np.argmax(x, axis=int(axis))
    return np.expand_dims(out, int(axis)) if bool(keep_dims) else out


def reduce_argmin(x, axis=-1, keep_dims=False):
    out = np.argmin(x, axis=int(axis))
    return np.expand_dims(out, int(axis)) if bool(keep_dims) else out


def scaled_dot_product_attention(query, key, value, attn_mask=None):
    """softmax(Q K^T / sqrt(d) + mask) V; a bool mask keeps True positions (False -> -inf)."""
    q, k, v = _f32(query), _f32(key), _f32(value)
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.sqrt(np.float32(q.shape[-1]))
    if attn_mask is not None:
        mask = np.asarray(attn_mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask
    return np.matmul(softmax(scores, axis=-1), v)
