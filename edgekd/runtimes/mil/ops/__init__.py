"""The registry: MIL op name -> the numpy function that evaluates it (one small function per op).

Each function takes the op's MIL parameters as keyword arguments (optional ones default as the MIL
op reference says) and returns its output(s). Adding an op is one function and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgekd.runtimes.mil.ops import constexpr, elementwise, nn, tensor

_e, _n, _t, _c = elementwise, nn, tensor, constexpr

OPS: dict[str, Callable[..., Any]] = {
    # elementwise binary
    "add": _e.add, "sub": _e.sub, "mul": _e.mul, "real_div": _e.real_div, "floor_div": _e.floor_div,
    "mod": _e.mod, "pow": _e.pow, "maximum": _e.maximum, "minimum": _e.minimum,
    "equal": _e.equal, "not_equal": _e.not_equal, "less": _e.less, "less_equal": _e.less_equal,
    "greater": _e.greater, "greater_equal": _e.greater_equal,
    "logical_and": _e.logical_and, "logical_or": _e.logical_or, "logical_xor": _e.logical_xor,
    "select": _e.select,
    # elementwise unary and activations
    "logical_not": _e.logical_not, "sqrt": _e.sqrt, "rsqrt": _e.rsqrt, "inverse": _e.inverse,
    "log": _e.log, "exp": _e.exp, "exp2": _e.exp2, "abs": _e.abs, "sign": _e.sign, "square": _e.square,
    "floor": _e.floor, "ceil": _e.ceil, "round": _e.round, "sin": _e.sin, "cos": _e.cos,
    "tanh": _e.tanh, "erf": _e.erf, "clip": _e.clip, "relu": _e.relu, "sigmoid": _e.sigmoid,
    "silu": _e.silu, "softplus": _e.softplus, "gelu": _e.gelu, "softmax": _e.softmax,
    # linear algebra, normalisation, reductions, attention
    "linear": _n.linear, "matmul": _n.matmul, "layer_norm": _n.layer_norm,
    "reduce_sum": _n.reduce_sum, "reduce_mean": _n.reduce_mean, "reduce_max": _n.reduce_max,
    "reduce_min": _n.reduce_min, "reduce_prod": _n.reduce_prod, "reduce_sum_square": _n.reduce_sum_square,
    "reduce_l2_norm": _n.reduce_l2_norm, "reduce_argmax": _n.reduce_argmax, "reduce_argmin": _n.reduce_argmin,
    "scaled_dot_product_attention": _n.scaled_dot_product_attention,
    # tensor shape, indexing and construction
    "cast": _t.cast, "identity": _t.identity, "shape": _t.shape, "gather": _t.gather,
    "gather_along_axis": _t.gather_along_axis, "concat": _t.concat, "stack": _t.stack, "split": _t.split,
    "slice_by_index": _t.slice_by_index, "slice_by_size": _t.slice_by_size, "squeeze": _t.squeeze,
    "expand_dims": _t.expand_dims, "reshape": _t.reshape, "transpose": _t.transpose, "tile": _t.tile,
    "fill": _t.fill, "fill_like": _t.fill_like, "range_1d": _t.range_1d, "cumsum": _t.cumsum,
    "band_part": _t.band_part,
    # compile-time weight decompression (folded at load)
    "constexpr_affine_dequantize": _c.constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": _c.constexpr_blockwise_shift_scale,
    "constexpr_lut_to_dense": _c.constexpr_lut_to_dense,
    "constexpr_sparse_to_dense": _c.constexpr_sparse_to_dense,
    "constexpr_cast": _c.constexpr_cast,
}
