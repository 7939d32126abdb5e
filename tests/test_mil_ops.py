"""Per-op tests of the MIL reference evaluator against numpy / PyTorch / coremltools' own decompression
code, run through the evaluator's op runner so the declared output dtype (fp16 rounding) applies."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.runtimes.mil.evaluate import run_operation, to_compute
from edgekd.runtimes.mil.ops import OPS
from edgekd.runtimes.mil.program import Operation, TensorSpec, decode_bytes

CODES = {"fp16": 10, "fp32": 11, "bool": 1, "int32": 23, "int8": 21}
NP = {"fp16": np.float16, "fp32": np.float32, "bool": np.bool_, "int32": np.int32, "int8": np.int8}
RNG = np.random.default_rng(0)


def run(op_type: str, out: str | list[str] = "fp32", **inputs):
    """Run one op on `inputs` (arrays, python values or lists of arrays for tuple params) and return
    its output(s) as arrays of the declared dtype(s)."""
    outs = [out] if isinstance(out, str) else out
    env, bindings = {}, {}
    for name, value in inputs.items():
        values = value if isinstance(value, list) and name == "values" else [value]
        keys = []
        for i, v in enumerate(values):
            env[f"{name}{i}"] = to_compute(v if isinstance(v, str) else np.asarray(v))
            keys.append(("var", f"{name}{i}"))
        bindings[name] = keys
    op = Operation(op_type, bindings, [TensorSpec(f"o{i}", CODES[d], ()) for i, d in enumerate(outs)], "test")
    results = [np.asarray(r).astype(NP[d]) for r, d in zip(run_operation(op, env), outs, strict=True)]
    return results[0] if isinstance(out, str) else results


def rand(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def torch_f(fn, *arrays, dtype="fp32", **kw):
    """PyTorch ground truth, computed in float32 and rounded to `dtype`."""
    import torch

    tensors = [torch.from_numpy(np.asarray(a, dtype=np.float32) if np.asarray(a).dtype.kind == "f" else np.asarray(a))
               for a in arrays]
    return fn(*tensors, **kw).numpy().astype(NP[dtype])


# --- elementwise -----------------------------------------------------------------------------------

BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide,
          "maximum": np.maximum, "minimum": np.minimum, "floor_div": np.floor_divide}


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 2))])
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_ops_broadcast_in_declared_dtype(op: str, shapes, dtype: str) -> None:
    x, y = rand(*shapes[0], dtype=NP[dtype]), rand(*shapes[1], dtype=NP[dtype]) + 3
    want = BINARY[op](x.astype(np.float32), y.astype(np.float32)).astype(NP[dtype])
    got = run(op, dtype, x=x, y=y)
    assert got.shape == np.broadcast_shapes(shapes[0], shapes[1]) and got.dtype == NP[dtype]
    np.testing.assert_array_equal(got, want)


def test_pow_and_int32_arithmetic() -> None:
    x = np.abs(rand(3, 4)) + 0.5
    np.testing.assert_allclose(run("pow", x=x, y=np.float32(3.0)), x ** 3, rtol=1e-6)
    a = np.array([[1, 2], [3, 4]], np.int32)
    np.testing.assert_array_equal(run("add", "int32", x=a, y=np.int32(-1)), a - 1)
    np.testing.assert_array_equal(run("mul", "int32", x=a, y=a), a * a)


def test_fp16_overflow_becomes_inf_and_nan_but_not_in_fp32() -> None:
    big = np.array([300.0, 60000.0, -300.0], np.float16)
    assert np.isinf(run("mul", "fp16", x=big, y=big)).all()
    assert np.isinf(run("add", "fp16", x=big[1:2], y=big[1:2]))[0]
    assert np.isfinite(run("mul", "fp32", x=big.astype(np.float32), y=big.astype(np.float32))).all()
    fill = np.float16(-np.inf)  # float32 min rounded to fp16
    assert np.isnan(run("mul", "fp16", x=np.zeros(2, np.float16), y=fill)).all()  # 0 * -inf
    assert np.float16(np.finfo(np.float32).min) == -np.inf


@pytest.mark.parametrize("op,fn", [("equal", np.equal), ("not_equal", np.not_equal), ("less", np.less),
                                   ("less_equal", np.less_equal), ("greater", np.greater),
                                   ("greater_equal", np.greater_equal)])
def test_comparisons_broadcast_to_bool(op: str, fn) -> None:
    x = np.array([[0, 1, 2], [2, 1, 0]], np.int32)
    y = np.array([1], np.int32)
    got = run(op, "bool", x=x, y=y)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, fn(x, y))


def test_select_and_logical_ops() -> None:
    cond = np.array([[True], [False]])
    a, b = rand(2, 3), rand(1, 3)
    np.testing.assert_array_equal(run("select", cond=cond, a=a, b=b), np.where(cond, a, b))
    p, q = np.array([True, False, True]), np.array([True, True, False])
    np.testing.assert_array_equal(run("logical_and", "bool", x=p, y=q), p & q)
    np.testing.assert_array_equal(run("logical_or", "bool", x=p, y=q), p | q)
    np.testing.assert_array_equal(run("logical_not", "bool", x=p), ~p)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_unary_ops_match_torch(dtype: str) -> None:
    import torch

    x = rand(4, 5, dtype=NP[dtype])
    pos = np.abs(x) + np.asarray(0.1, NP[dtype])
    tol = {"fp32": 1e-6, "fp16": 1e-3}[dtype]
    cases = {"tanh": (x, torch.tanh), "exp": (x, torch.exp), "sqrt": (pos, torch.sqrt), "abs": (x, torch.abs),
             "relu": (x, torch.relu), "sigmoid": (x, torch.sigmoid), "erf": (x, torch.erf),
             "floor": (x, torch.floor), "ceil": (x, torch.ceil), "square": (x, torch.square),
             "sin": (x, torch.sin), "cos": (x, torch.cos), "silu": (x, torch.nn.functional.silu)}
    for op, (arr, fn) in cases.items():
        np.testing.assert_allclose(run(op, dtype, x=arr), torch_f(fn, arr, dtype=dtype), rtol=tol, atol=tol,
                                   err_msg=op)
    np.testing.assert_allclose(run("rsqrt", dtype, x=pos, epsilon=np.float32(1e-5)),
                               torch_f(lambda t: torch.rsqrt(t + 1e-5), pos, dtype=dtype), rtol=tol)
    np.testing.assert_allclose(run("log", dtype, x=pos), torch_f(torch.log, pos, dtype=dtype), rtol=tol, atol=tol)
    np.testing.assert_allclose(run("clip", dtype, x=x, alpha=np.float32(-0.5), beta=np.float32(0.5)),
                               np.clip(x, -0.5, 0.5), rtol=tol)


def test_erf_is_accurate_over_a_wide_range() -> None:
    import torch

    x = np.linspace(-6, 6, 10001, dtype=np.float32)
    np.testing.assert_allclose(run("erf", x=x), torch.erf(torch.from_numpy(x)).numpy(), atol=3e-7)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("mode,approx", [("EXACT", "none"), ("TANH_APPROXIMATION", "tanh")])
def test_gelu_modes_match_torch(mode: str, approx: str, dtype: str) -> None:
    import torch

    x = rand(3, 64, dtype=NP[dtype], scale=3.0)
    want = torch_f(lambda t: torch.nn.functional.gelu(t, approximate=approx), x, dtype=dtype)
    tol = {"fp32": 1e-6, "fp16": 1e-3}[dtype]
    np.testing.assert_allclose(run("gelu", dtype, x=x, mode=mode), want, rtol=tol, atol=tol)
    with pytest.raises(Exception, match="gelu mode"):
        run("gelu", x=x, mode="CUBIC")


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_softmax_matches_torch_and_inf_gives_nan(dtype: str) -> None:
    import torch

    x = rand(2, 3, 7, dtype=NP[dtype], scale=4.0)
    for axis in (-1, 1):
        want = torch_f(lambda t, a=axis: torch.softmax(t, dim=a), x, dtype=dtype)
        np.testing.assert_allclose(run("softmax", dtype, x=x, axis=np.int32(axis)), want, atol=1e-3 if dtype == "fp16" else 1e-6)
    overflowed = np.array([[1.0, np.inf, 0.0]], NP[dtype])
    assert np.isnan(run("softmax", dtype, x=overflowed, axis=np.int32(-1))).any()


# --- linear algebra, normalisation, reductions -----------------------------------------------------


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_linear_and_matmul_match_torch(dtype: str) -> None:
    import torch

    x, w, b = rand(2, 5, 8, dtype=NP[dtype]), rand(6, 8, dtype=NP[dtype]), rand(6, dtype=NP[dtype])
    tol = {"fp32": 1e-5, "fp16": 2e-3}[dtype]
    np.testing.assert_allclose(run("linear", dtype, x=x, weight=w, bias=b),
                               torch_f(torch.nn.functional.linear, x, w, b, dtype=dtype), rtol=tol, atol=tol)
    np.testing.assert_allclose(run("linear", dtype, x=x, weight=w),
                               torch_f(torch.nn.functional.linear, x, w, dtype=dtype), rtol=tol, atol=tol)
    a, c = rand(2, 1, 4, 3, dtype=NP[dtype]), rand(3, 5, 3, dtype=NP[dtype])  # broadcast batch dims
    got = run("matmul", dtype, x=a, y=c, transpose_x=False, transpose_y=True)
    want = torch_f(lambda p, q: torch.matmul(p, q.transpose(-1, -2)), a, c, dtype=dtype)
    assert got.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    got = run("matmul", dtype, x=a.swapaxes(-1, -2), y=c.swapaxes(-1, -2), transpose_x=True, transpose_y=False)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_layer_norm_matches_torch(dtype: str) -> None:
    import torch

    x = rand(2, 4, 16, dtype=NP[dtype], scale=3.0) + np.asarray(1.0, NP[dtype])
    g, b = rand(16, dtype=NP[dtype]), rand(16, dtype=NP[dtype])
    tol = {"fp32": 1e-5, "fp16": 3e-3}[dtype]
    want = torch_f(lambda t, gg, bb: torch.nn.functional.layer_norm(t, (16,), gg, bb, eps=1e-5), x, g, b, dtype=dtype)
    got = run("layer_norm", dtype, x=x, axes=np.array([-1], np.int32), gamma=g, beta=b, epsilon=np.float32(1e-5))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    g2 = rand(4, 16, dtype=NP[dtype])
    want2 = torch_f(lambda t, gg: torch.nn.functional.layer_norm(t, (4, 16), gg, eps=1e-3), x, g2, dtype=dtype)
    got2 = run("layer_norm", dtype, x=x, axes=np.array([1, 2], np.int32), gamma=g2, epsilon=np.float32(1e-3))
    np.testing.assert_allclose(got2, want2, rtol=tol, atol=tol)


def test_reductions_match_numpy() -> None:
    x = rand(2, 3, 4)
    for op, fn in [("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max), ("reduce_min", np.min)]:
        np.testing.assert_allclose(run(op, x=x, axes=np.array([1, -1], np.int32), keep_dims=True),
                                   fn(x, axis=(1, 2), keepdims=True), rtol=1e-6, err_msg=op)
        np.testing.assert_allclose(run(op, x=x), fn(x), rtol=1e-6, err_msg=op)
    np.testing.assert_array_equal(run("reduce_argmax", "int32", x=x, axis=np.int32(1)), np.argmax(x, axis=1))


def test_scaled_dot_product_attention_matches_torch() -> None:
    import torch

    q, k, v = rand(2, 3, 5, 8), rand(2, 3, 6, 8), rand(2, 3, 6, 8)
    mask = np.where(RNG.random((2, 1, 5, 6)) > 0.3, 0.0, -1e4).astype(np.float32)
    want = torch_f(lambda a, b, c, m: torch.nn.functional.scaled_dot_product_attention(a, b, c, attn_mask=m),
                   q, k, v, mask)
    np.testing.assert_allclose(run("scaled_dot_product_attention", query=q, key=k, value=v, attn_mask=mask),
                               want, atol=1e-5)
    keep = RNG.random((5, 6)) > 0.3
    keep[:, 0] = True
    want = torch_f(lambda a, b, c, m: torch.nn.functional.scaled_dot_product_attention(a, b, c, attn_mask=m),
                   q, k, v, keep)
    np.testing.assert_allclose(run("scaled_dot_product_attention", query=q, key=k, value=v, attn_mask=keep),
                               want, atol=1e-5)


# --- tensor shape, indexing, construction ----------------------------------------------------------


def test_shape_cast_and_identity() -> None:
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(run("shape", "int32", x=x), [2, 3, 4])
    y = np.array([1.7, -1.7, 70000.0, 0.0], np.float32)
    np.testing.assert_array_equal(run("cast", "int32", x=y[:2], dtype="int32"), [1, -1])  # truncation
    assert np.isinf(run("cast", "fp16", x=y, dtype="fp16")[2])  # out of fp16 range
    np.testing.assert_array_equal(run("cast", "bool", x=y, dtype="bool"), [True, True, True, False])
    np.testing.assert_array_equal(run("identity", x=x), x)
    with pytest.raises(Exception, match="cast dtype"):
        run("cast", x=y, dtype="complex64")


def test_gather_matches_torch() -> None:
    import torch

    table = rand(10, 4)
    idx = np.array([[1, 9, -1], [0, 3, 3]], np.int32)
    want = torch.from_numpy(table)[torch.from_numpy(np.where(idx < 0, idx + 10, idx)).long()].numpy()
    np.testing.assert_array_equal(run("gather", x=table, indices=idx, axis=np.int32(0)), want)
    np.testing.assert_array_equal(run("gather", x=table, indices=np.int32(2), axis=np.int32(0)), table[2])
    np.testing.assert_array_equal(run("gather", x=table, indices=np.array([3, 0], np.int32), axis=np.int32(-1)),
                                  table[:, [3, 0]])
    x = rand(2, 5, 3)
    idx_b = np.array([[4, 0], [1, 1]], np.int32)
    got = run("gather", x=x, indices=idx_b, axis=np.int32(1), batch_dims=np.int32(1))
    np.testing.assert_array_equal(got, np.stack([x[0, [4, 0]], x[1, [1, 1]]]))
    idx_a = RNG.integers(0, 5, (2, 3, 3)).astype(np.int32)
    want = torch.gather(torch.from_numpy(x), 1, torch.from_numpy(idx_a).long()).numpy()
    np.testing.assert_array_equal(run("gather_along_axis", x=x, indices=idx_a, axis=np.int32(1)), want)


def test_concat_stack_split() -> None:
    a, b = rand(2, 3), rand(2, 1)
    np.testing.assert_array_equal(run("concat", values=[a, b], axis=np.int32(-1)), np.concatenate([a, b], 1))
    c = rand(2, 3)
    inter = run("concat", values=[a, c], axis=np.int32(1), interleave=True)
    np.testing.assert_array_equal(inter, np.stack([a, c], axis=2).reshape(2, 6))
    scalars = run("concat", "int32", values=[np.int32(2), np.array([-1, 4], np.int32)], axis=np.int32(0))
    np.testing.assert_array_equal(scalars, [2, -1, 4])
    np.testing.assert_array_equal(run("stack", values=[a, c], axis=np.int32(1)), np.stack([a, c], 1))
    p, q = run("split", ["fp32", "fp32"], x=rand(4, 6), axis=np.int32(1), num_splits=np.int32(2))
    assert p.shape == q.shape == (4, 3)
    x = rand(4, 6)
    parts = run("split", ["fp32"] * 3, x=x, axis=np.int32(1), split_sizes=np.array([1, 2, 3], np.int32))
    np.testing.assert_array_equal(np.concatenate(parts, 1), x)
    assert [t.shape[1] for t in parts] == [1, 2, 3]


def test_slice_by_index_and_size() -> None:
    x = rand(4, 6, 5)
    got = run("slice_by_index", x=x, begin=np.array([1, 0, -3], np.int32), end=np.array([3, 6, 5], np.int32))
    np.testing.assert_array_equal(got, x[1:3, 0:6, -3:5])
    got = run("slice_by_index", x=x, begin=np.array([0, 1, 0], np.int32), end=np.array([0, 6, 0], np.int32),
              stride=np.array([1, 2, 1], np.int32), begin_mask=np.array([True, False, True]),
              end_mask=np.array([True, False, True]))
    np.testing.assert_array_equal(got, x[:, 1:6:2, :])
    got = run("slice_by_index", x=x, begin=np.array([0, 0, -1], np.int32), end=np.array([0, 0, 0], np.int32),
              begin_mask=np.array([True, False, False]), end_mask=np.array([True, False, False]),
              squeeze_mask=np.array([False, True, True]))
    np.testing.assert_array_equal(got, x[:, 0, -1])
    got = run("slice_by_index", x=x, begin=np.array([3, 5, 4], np.int32), end=np.array([0, 0, 0], np.int32),
              stride=np.array([-1, -2, -1], np.int32), end_mask=np.array([True, True, True]))
    np.testing.assert_array_equal(got, x[3::-1, 5::-2, 4::-1])
    got = run("slice_by_size", x=x, begin=np.array([1, 2, 0], np.int32), size=np.array([2, -1, 3], np.int32))
    np.testing.assert_array_equal(got, x[1:3, 2:, 0:3])


def test_reshape_squeeze_expand_transpose_tile() -> None:
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(run("reshape", x=x, shape=np.array([2, -1], np.int32)), x.reshape(2, 12))
    np.testing.assert_array_equal(run("reshape", x=x, shape=np.array([0, -1, 2], np.int32)), x.reshape(2, 6, 2))
    # iOS17: zeros right-aligned against x.shape when the ranks differ
    np.testing.assert_array_equal(run("reshape", x=rand(2, 50), shape=np.array([1, 0, -1, 0], np.int32)).shape,
                                  (1, 1, 2, 50))
    y = rand(1, 3, 1)
    assert run("squeeze", x=y).shape == (3,)
    assert run("squeeze", x=y, axes=np.array([-1], np.int32)).shape == (1, 3)
    assert run("expand_dims", x=x, axes=np.array([1, -1], np.int32)).shape == (2, 1, 3, 4, 1)
    np.testing.assert_array_equal(run("transpose", x=x, perm=np.array([2, 0, 1], np.int32)), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(run("tile", x=x, reps=np.array([1, 2, 1], np.int32)), np.tile(x, (1, 2, 1)))


def test_fill_range_cumsum_band_part() -> None:
    np.testing.assert_array_equal(run("fill", shape=np.array([2, 3], np.int32), value=np.float32(1.5)),
                                  np.full((2, 3), 1.5))
    got = run("fill_like", "fp16", ref_tensor=np.zeros((2, 4), np.int32), value=np.float16(1.0))
    assert got.dtype == np.float16 and got.shape == (2, 4) and (got == 1).all()
    np.testing.assert_array_equal(run("range_1d", "int32", end=np.int32(10), start=np.int32(2), step=np.int32(3)),
                                  [2, 5, 8])
    x = np.arange(1, 7, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(run("cumsum", "int32", x=x, axis=np.int32(1)), np.cumsum(x, 1))
    np.testing.assert_array_equal(run("cumsum", "int32", x=x, axis=np.int32(1), exclusive=True),
                                  [[0, 1, 3], [0, 4, 9]])
    np.testing.assert_array_equal(run("cumsum", "int32", x=x, axis=np.int32(1), reverse=True),
                                  [[6, 5, 3], [15, 11, 6]])
    m = rand(2, 4, 4)
    np.testing.assert_array_equal(run("band_part", x=m, lower=np.int32(0), upper=np.int32(-1)), np.triu(m))
    np.testing.assert_array_equal(run("band_part", x=m, lower=np.int32(-1), upper=np.int32(0)), np.tril(m))
    np.testing.assert_array_equal(run("band_part", x=m, lower=np.int32(1), upper=np.int32(1)),
                                  np.triu(np.tril(m, 1), -1))


# --- compile-time weight decompression vs coremltools' own reference code --------------------------


def test_constexpr_affine_dequantize() -> None:
    q = RNG.integers(-128, 127, (4, 6)).astype(np.int8)
    scale, zp = np.abs(rand(4)) + 0.01, np.array([0, 1, -2, 3], np.int8)
    got = run("constexpr_affine_dequantize", quantized_data=q, zero_point=zp, scale=scale, axis=np.int32(0))
    np.testing.assert_allclose(got, scale[:, None] * (q.astype(np.float32) - zp[:, None]), rtol=1e-6)
    got16 = run("constexpr_affine_dequantize", "fp16", quantized_data=q, zero_point=np.int8(0),
                scale=np.float16(0.01), axis=np.int32(1))
    np.testing.assert_allclose(got16, (0.01 * q).astype(np.float16), rtol=1e-3)


def test_constexpr_blockwise_shift_scale_matches_coremltools() -> None:
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import (
        constexpr_blockwise_shift_scale as ref,
    )

    data = RNG.integers(-8, 7, (4, 8)).astype(np.int8)
    scale, offset = np.abs(rand(2, 4)) + 0.1, RNG.integers(-2, 2, (2, 4)).astype(np.int8)
    got = run("constexpr_blockwise_shift_scale", data=data, scale=scale, offset=offset)
    np.testing.assert_allclose(got, ref.decompress(data, scale, offset), rtol=1e-6)
    np.testing.assert_allclose(run("constexpr_blockwise_shift_scale", data=data, scale=scale),
                               ref.decompress(data, scale, None), rtol=1e-6)


def test_constexpr_lut_to_dense_matches_coremltools() -> None:
    from coremltools.converters.mil.mil.ops.defs.iOS16.constexpr_ops import constexpr_lut_to_dense as ref16
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_lut_to_dense as ref18
    from coremltools.optimize import _utils as cto_utils

    lut = rand(16)
    idx = RNG.integers(0, 16, 6 * 5).astype(np.uint8)
    packed = cto_utils.pack_elements_into_bits(idx, 4)
    shape = np.array([6, 5], np.uint32)
    np.testing.assert_array_equal(run("constexpr_lut_to_dense", indices=packed, lut=lut, shape=shape),
                                  ref16.decompress(lut, packed, shape))
    indices = RNG.integers(0, 4, (6, 4)).astype(np.uint8)  # two LUTs along axis 0 (per-group palettization)
    lut18 = rand(2, 1, 4, 1)
    np.testing.assert_array_equal(run("constexpr_lut_to_dense", indices=indices, lut=lut18),
                                  ref18.decompress(indices, lut18, None))


def test_constexpr_sparse_to_dense_and_cast() -> None:
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_sparse_to_dense as ref

    mask = (RNG.random((3, 4)) > 0.5).astype(np.uint8)
    data = rand(int(mask.sum()))
    np.testing.assert_array_equal(run("constexpr_sparse_to_dense", nonzero_data=data, mask=mask),
                                  ref.decompress(data, mask))
    packed = np.packbits(mask.reshape(-1), bitorder="little")  # iOS16 form: LSB-first bytes + shape
    np.testing.assert_array_equal(run("constexpr_sparse_to_dense", nonzero_data=data, mask=packed,
                                      shape=np.array([3, 4], np.uint32)), ref.decompress(data, mask))
    h = rand(3).astype(np.float16)
    np.testing.assert_array_equal(run("constexpr_cast", source_val=h, output_dtype="fp32"), h.astype(np.float32))


@pytest.mark.parametrize("code,nbits,signed", [(35, 4, False), (25, 4, True), (36, 2, False), (37, 1, False),
                                               (38, 6, False), (39, 3, False)])
def test_sub_byte_unpacking_matches_coremltools(code: int, nbits: int, signed: bool) -> None:
    from coremltools.optimize import _utils as cto_utils

    n = 37
    lo, hi = (-(1 << (nbits - 1)), 1 << (nbits - 1)) if signed else (0, 1 << nbits)
    values = RNG.integers(lo, hi, n)
    packed = cto_utils.pack_elements_into_bits(values.astype(np.int8 if signed else np.uint8), nbits)
    np.testing.assert_array_equal(decode_bytes(packed.tobytes(), code, n), values)


def test_registry_covers_the_ops_bert_students_use() -> None:
    needed = ("shape gather gather_along_axis concat slice_by_index slice_by_size squeeze equal select real_div "
              "tile add sub mul pow sqrt rsqrt layer_norm expand_dims cast linear reshape transpose matmul "
              "softmax gelu tanh reduce_mean reduce_sum fill fill_like range_1d cumsum greater_equal "
              "constexpr_affine_dequantize constexpr_blockwise_shift_scale constexpr_lut_to_dense").split()
    assert [op for op in needed if op not in OPS] == []
    assert all(callable(fn) for fn in OPS.values())
