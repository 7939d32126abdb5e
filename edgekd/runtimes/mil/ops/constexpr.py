"""Compile-time weight decompression MIL ops (iOS16 `constexpr_ops.py`, iOS18 `compression.py`).
The program loader folds them once into dense constants. Sub-byte tensors (int4, uint1..uint6)
arrive already unpacked by the loader, one element per value."""

from __future__ import annotations

import numpy as np

from edgekd.runtimes.mil.ops.tensor import CAST_DTYPES


def _along_axis(v, rank, axis):
    """A scalar or a vector along `axis`, shaped to broadcast against a rank-`rank` tensor."""
    v = np.asarray(v)
    if v.ndim == 0:
        return v
    shape = [1] * rank
    shape[int(axis) % rank] = v.size
    return v.reshape(shape)


def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    """scale * (quantized_data - zero_point), scale/zero_point per-tensor or per-channel along axis."""
    q = np.asarray(quantized_data).astype(np.float32)
    rank = q.ndim
    zp = _along_axis(np.asarray(zero_point).astype(np.float32), rank, axis)
    return _along_axis(scale, rank, axis) * (q - zp)


def _repeat_blocks(v, shape):
    """Repeat each block entry of `v` to cover `shape` (block size = shape[i] // v.shape[i])."""
    for axis, (n, m) in enumerate(zip(shape, np.shape(v), strict=True)):
        if n // m > 1:
            v = np.repeat(v, n // m, axis=axis)
    return v


def constexpr_blockwise_shift_scale(data, scale, offset=None):
    """scale * (data - offset), with scale/offset given per block of `data`."""
    data = np.asarray(data).astype(np.float32)
    if offset is not None:
        data = data - _repeat_blocks(np.asarray(offset).astype(np.float32), data.shape)
    return _repeat_blocks(np.asarray(scale), data.shape) * data


def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    """Palettized weights: out = lut[indices]. iOS16 form: packed uint8 `indices` + `shape`;
    iOS18 form: `indices` tensor and per-block `lut` of shape [blocks..., palettes, vector_size]."""
    lut = np.asarray(lut)
    if shape is not None:  # iOS16: LSB-first packed n-bit indices
        nbits = int(np.log2(lut.size))
        count = int(np.prod(np.asarray(shape)))
        bits = np.unpackbits(np.asarray(indices, dtype=np.uint8), bitorder="little")[: count * nbits]
        idx = (bits.reshape(count, nbits) << np.arange(nbits)).sum(axis=1)
        return lut[idx].reshape([int(s) for s in np.asarray(shape)])
    indices = np.asarray(indices).astype(np.int64)
    if lut.shape[-1] != 1:
        raise ValueError(f"vector palettization (vector size {lut.shape[-1]}) is not supported by the reference")
    tables = _repeat_blocks(lut[..., 0], indices.shape + (lut.shape[-2],))  # [*indices.shape, palettes]
    return np.take_along_axis(tables, indices[..., None], axis=-1)[..., 0]


def constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    """Scatter `nonzero_data` into the set bits of `mask` (iOS16: LSB-first packed bytes + shape)."""
    if shape is not None:
        count = int(np.prod(np.asarray(shape)))
        mask = np.unpackbits(np.asarray(mask, dtype=np.uint8), bitorder="little")[:count]
        mask = mask.reshape([int(s) for s in np.asarray(shape)])
    mask = np.asarray(mask)
    out = np.zeros(mask.shape, dtype=np.asarray(nonzero_data).dtype)
    out[mask != 0] = nonzero_data
    return out


def constexpr_cast(source_val, output_dtype):
    return np.asarray(source_val).astype(CAST_DTYPES[str(output_dtype)])
