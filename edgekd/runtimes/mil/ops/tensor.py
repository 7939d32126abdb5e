"""Shape, indexing and tensor-building MIL ops (iOS15-18 `tensor_transformation.py`,
`tensor_operation.py`, `scatter_gather.py`, `elementwise_unary.py: cast`)."""

from __future__ import annotations

import numpy as np

# MIL dtype strings accepted by `cast` -> numpy dtype.
CAST_DTYPES = {
    "bool": np.bool_, "fp16": np.float16, "fp32": np.float32, "fp64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "int64": np.int64, "uint32": np.uint32,
}


def _ints(v):
    return [int(i) for i in np.atleast_1d(v)]


def cast(x, dtype):
    """Convert to `dtype` (a MIL dtype string); float -> int truncates toward zero."""
    if str(dtype) not in CAST_DTYPES:
        raise ValueError(f"cast dtype {dtype!r} is not one of {sorted(CAST_DTYPES)}")
    return np.asarray(x).astype(CAST_DTYPES[str(dtype)])


def identity(x):
    return x


def shape(x):
    return np.array(np.shape(x), dtype=np.int32)


def _wrap(indices, size):
    indices = np.asarray(indices).astype(np.int64)
    return np.where(indices < 0, indices + size, indices)


def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    """Take `indices` along `axis` (negative indices count from the end); `batch_dims` leading
    dimensions of x and indices are batch dimensions gathered pairwise."""
    x = np.asarray(x)
    axis = int(axis) % x.ndim
    idx = _wrap(indices, x.shape[axis])
    b = int(batch_dims)
    if b == 0:
        return np.take(x, idx, axis=axis)
    lead = x.shape[:b]
    xf = x.reshape((-1,) + x.shape[b:])
    idf = idx.reshape((-1,) + idx.shape[b:])
    out = np.stack([np.take(xi, ii, axis=axis - b) for xi, ii in zip(xf, idf, strict=True)])
    return out.reshape(lead + out.shape[1:])


def gather_along_axis(x, indices, axis=0, validate_indices=False):
    x = np.asarray(x)
    axis = int(axis) % x.ndim
    return np.take_along_axis(x, _wrap(indices, x.shape[axis]), axis=axis)


def concat(values, axis, interleave=False):
    """Concatenate along `axis`; interleave=True alternates the inputs' slices along it. Scalars
    count as 1-element vectors (converted shape computations concatenate scalar dims)."""
    values = [np.atleast_1d(v) for v in values]
    axis = int(axis) % np.ndim(values[0])
    if not bool(interleave):
        return np.concatenate(values, axis=axis)
    stacked = np.stack(values, axis=axis + 1)
    shape = list(np.shape(values[0]))
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def stack(values, axis):
    return np.stack(values, axis=int(axis))


def split(x, axis, num_splits=None, split_sizes=None):
    """A tuple of pieces along `axis`, equal (`num_splits`) or of `split_sizes`."""
    axis = int(axis)
    if split_sizes is not None:
        return tuple(np.split(x, np.cumsum(_ints(split_sizes))[:-1], axis=axis))
    return tuple(np.split(x, int(num_splits), axis=axis))


def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    """Strided slice; masked begin/end mean 'from the start'/'to the end'; squeezed axes take one element."""
    x = np.asarray(x)
    rank = x.ndim
    begin, end = _ints(begin), _ints(end)
    stride = _ints(stride) if stride is not None else [1] * rank
    bm = [bool(m) for m in np.atleast_1d(begin_mask)] if begin_mask is not None else [False] * rank
    em = [bool(m) for m in np.atleast_1d(end_mask)] if end_mask is not None else [False] * rank
    sm = [bool(m) for m in np.atleast_1d(squeeze_mask)] if squeeze_mask is not None else [False] * rank
    slices = []
    for i in range(rank):
        if sm[i]:
            b = begin[i] % x.shape[i] if x.shape[i] else 0
            slices.append(slice(b, b + 1, 1))
        else:
            slices.append(slice(None if bm[i] else begin[i], None if em[i] else end[i], stride[i]))
    out = x[tuple(slices)]
    squeeze_axes = tuple(i for i in range(rank) if sm[i])
    return np.squeeze(out, axis=squeeze_axes) if squeeze_axes else out


def slice_by_size(x, begin, size):
    """x[begin : begin + size] per axis; size -1 means to the end."""
    x = np.asarray(x)
    slices = []
    for i, (b, s) in enumerate(zip(_ints(begin), _ints(size), strict=True)):
        b = b % x.shape[i] if x.shape[i] else 0
        slices.append(slice(b, None if s == -1 else b + s))
    return x[tuple(slices)]


def squeeze(x, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(_ints(axes)))


def expand_dims(x, axes):
    """Insert size-1 axes at `axes` (positions in the output)."""
    return np.expand_dims(x, axis=tuple(_ints(axes)))


def reshape(x, shape):
    """Reshape; -1 is inferred and 0 copies the matching input dim (same index when the ranks
    agree, right-aligned otherwise as iOS17 specifies; 1 when there is no matching dim)."""
    x = np.asarray(x)
    target = _ints(shape)
    offset = x.ndim - len(target)
    for i, d in enumerate(target):
        if d == 0:
            j = i + offset
            target[i] = x.shape[j] if 0 <= j < x.ndim else 1
    return x.reshape(target)


def transpose(x, perm):
    return np.transpose(x, _ints(perm))


def tile(x, reps):
    return np.tile(x, _ints(reps))


def fill(shape, value=0.0):
    return np.full(_ints(shape), value)


def fill_like(ref_tensor, value=0.0, dtype=None):
    return np.full(np.shape(ref_tensor), value)


def range_1d(end, start, step):
    return np.arange(np.asarray(start).item(), np.asarray(end).item(), np.asarray(step).item())


def cumsum(x, axis=0, exclusive=False, reverse=False):
    """Cumulative sum along `axis`; exclusive shifts by one (first element 0); reverse sums from the end."""
    axis = int(axis)
    x = np.flip(x, axis=axis) if bool(reverse) else np.asarray(x)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if bool(exclusive):
        out = out - x
    return np.flip(out, axis=axis) if bool(reverse) else out


def band_part(x, lower=-1, upper=-1):
    """Keep the band of the last two dims: lower (upper) diagonals below (above); -1 keeps all."""
    rows, cols = np.shape(x)[-2:]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = np.ones((rows, cols), dtype=bool)
    if int(lower) >= 0:
        keep &= (i - j) <= int(lower)
    if int(upper) >= 0:
        keep &= (j - i) <= int(upper)
    return np.where(keep, x, 0)
