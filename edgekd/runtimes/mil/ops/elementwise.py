"""Elementwise MIL ops (iOS15 `elementwise_binary.py`, `elementwise_unary.py`, `activation.py`,
`control_flow.py: select`), with numpy broadcasting as MIL specifies. Inputs arrive in compute
precision (fp16 tensors as float32); the evaluator rounds each output to the declared dtype."""

from __future__ import annotations

import numpy as np

# --- binary (numpy broadcasting = MIL broadcasting) ------------------------------------------------


def add(x, y):
    return np.add(x, y)


def sub(x, y):
    return np.subtract(x, y)


def mul(x, y):
    return np.multiply(x, y)


def real_div(x, y):
    return np.true_divide(x, y)


def floor_div(x, y):
    return np.floor_divide(x, y)


def mod(x, y):
    return np.mod(x, y)


def pow(x, y):  # noqa: A001 - the MIL op name
    return np.power(x, y)


def maximum(x, y):
    return np.maximum(x, y)


def minimum(x, y):
    return np.minimum(x, y)


def equal(x, y):
    return np.equal(x, y)


def not_equal(x, y):
    return np.not_equal(x, y)


def less(x, y):
    return np.less(x, y)


def less_equal(x, y):
    return np.less_equal(x, y)


def greater(x, y):
    return np.greater(x, y)


def greater_equal(x, y):
    return np.greater_equal(x, y)


def logical_and(x, y):
    return np.logical_and(x, y)


def logical_or(x, y):
    return np.logical_or(x, y)


def logical_xor(x, y):
    return np.logical_xor(x, y)


def select(cond, a, b):
    """cond ? a : b, broadcast."""
    return np.where(cond, a, b)


# --- unary -----------------------------------------------------------------------------------------


def logical_not(x):
    return np.logical_not(x)


def sqrt(x):
    return np.sqrt(x)


def rsqrt(x, epsilon=1e-12):
    """1 / sqrt(x + epsilon)."""
    return 1.0 / np.sqrt(x + epsilon)


def inverse(x, epsilon=1e-4):
    """1 / (x + epsilon)."""
    return 1.0 / (x + epsilon)


def log(x, epsilon=1e-45):
    return np.log(x + epsilon)


def exp(x):
    return np.exp(x)


def exp2(x):
    return np.exp2(x)


def abs(x):  # noqa: A001 - the MIL op name
    return np.abs(x)


def sign(x):
    return np.sign(x)


def square(x):
    return np.square(x)


def floor(x):
    return np.floor(x)


def ceil(x):
    return np.ceil(x)


def round(x):  # noqa: A001 - the MIL op name
    return np.round(x)


def sin(x):
    return np.sin(x)


def cos(x):
    return np.cos(x)


def tanh(x):
    return np.tanh(x)


def erf(x):
    """Error function: Numerical Recipes' Chebyshev erfc (fractional error < 1.2e-7, below fp32's
    resolution for gelu), evaluated in float64 so the reference needs no scipy."""
    z = np.abs(np.asarray(x, dtype=np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(-z * z + poly)
    return np.where(np.asarray(x) >= 0, 1.0 - erfc, erfc - 1.0).astype(np.result_type(x, np.float32))


def clip(x, alpha, beta):
    return np.clip(x, alpha, beta)


# --- activations -----------------------------------------------------------------------------------


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(x, 0)


def gelu(x, mode="EXACT"):
    """EXACT: x * Phi(x); TANH_APPROXIMATION: the tanh form; SIGMOID_APPROXIMATION: x * sigmoid(1.702 x)."""
    mode = str(mode)
    if mode == "EXACT":
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(1.702 * x)
    raise ValueError(f"gelu mode {mode!r} is not one of EXACT, TANH_APPROXIMATION, SIGMOID_APPROXIMATION")


def softmax(x, axis=-1):
    """Numerically stable softmax; +inf inputs (fp16 overflow) give NaN, as on device."""
    shifted = x - np.max(x, axis=int(axis), keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=int(axis), keepdims=True)
