"""Evaluate a loaded ML Program op by op with numpy, in the precision the program declares.

Precision rule (the one decision that matters for fp16 programs): every op computes in float32
(matmul/linear through BLAS) and its output is then rounded to the dtype the program declares for
that output. An fp16 program therefore stores every intermediate tensor at fp16 precision: a value
beyond 65504 becomes inf, inf - inf becomes NaN, and tiny values flush as fp16 does, exactly where
Core ML would store an fp16 tensor. What the reference does not model is the accumulation inside one
op (Core ML's GPU/ANE may accumulate a matmul or a reduction in fp16; here it is fp32), so it is
slightly *more* accurate than a device, never less: an overflow it shows is real; a device can show
a little more rounding noise. fp16 values are held as float32 arrays that are exactly
fp16-representable (so numpy's fast float32 kernels run), and returned as float16.

Evaluation is a pure function of (program, inputs): safe to call from several threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.errors import ModelError
from edgekd.runtimes.mil.ir import Operation, Program, TensorSpec

# Parameters that are MIL tuples (a variadic list of tensors), whatever their length.
_TUPLE_PARAMS = {"values"}
# Ops that only move or pick values of one dtype: their outputs are already at the declared
# precision, so the fp16 rounding pass (a third of an fp16 program's time) is skipped for them.
_DATA_MOVEMENT = {"reshape", "transpose", "expand_dims", "squeeze", "gather", "gather_along_axis",
                  "slice_by_index", "slice_by_size", "concat", "stack", "split", "tile", "identity", "select"}


def to_compute(value: Any) -> Any:
    """fp16 arrays -> float32 (exactly representable); everything else unchanged."""
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)
    if isinstance(value, np.float16):
        return np.float32(value)
    return value


def store(value: Any, spec: TensorSpec) -> Any:
    """Round an op output to its declared dtype (fp16 kept as fp16-exact float32)."""
    if spec.dtype in (0, 2) or isinstance(value, (list, str)):
        return value
    arr = np.asarray(value)
    if spec.np_dtype is np.float16:
        return arr.astype(np.float16).astype(np.float32)
    return arr.astype(spec.np_dtype, copy=False)


def run_operation(op: Operation, env: dict[str, Any]) -> list[Any]:
    """Run one operation against the values in `env`; return its outputs, rounded as declared."""
    from edgekd.runtimes.mil.ops import OPS

    kwargs: dict[str, Any] = {}
    for param, bindings in op.inputs.items():
        values = [env[v] if kind == "var" else to_compute(v) for kind, v in bindings]
        kwargs[param] = values if (param in _TUPLE_PARAMS or len(values) != 1) else values[0]
    try:
        # inf/NaN are results to report (fp16 overflow), not warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            result = OPS[op.type](**kwargs)
            outputs = _as_list(result)
            if op.type not in _DATA_MOVEMENT or len(outputs) != len(op.outputs):
                outputs = [store(v, spec) for v, spec in zip(outputs, op.outputs, strict=True)]
    except (ValueError, IndexError, TypeError, KeyError) as exc:
        shapes = {k: getattr(v, "shape", v if isinstance(v, str) else type(v).__name__) for k, v in kwargs.items()}
        raise ModelError(f"Core ML op '{op.type}' at {op.location} failed on inputs {shapes}: {exc}") from exc
    return outputs


def _as_list(result: Any) -> list[Any]:
    return list(result) if isinstance(result, tuple) else [result]


def evaluate(program: Program, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `program` on `inputs` (name -> array); return its outputs by name, in declared dtypes.

    Input shapes are checked against the shapes the model allows (fixed, enumerated or ranged), as
    Core ML itself would; a missing input or a shape it does not allow is a `ModelError`."""
    env: dict[str, Any] = dict(program.consts)
    for spec in program.inputs:
        if spec.name not in inputs:
            raise ModelError(f"input {spec.name!r} is missing (the model takes: "
                             f"{', '.join(s.name for s in program.inputs)})")
        value = np.asarray(inputs[spec.name])
        check_shape(program, spec.name, value.shape)
        with np.errstate(over="ignore"):
            env[spec.name] = store(value, spec)
    for op in program.operations:
        for spec, value in zip(op.outputs, run_operation(op, env), strict=True):
            env[spec.name] = value
    return {spec.name: np.asarray(env[spec.name]).astype(spec.np_dtype, copy=False) for spec in program.outputs}


def check_shape(program: Program, name: str, shape: tuple[int, ...]) -> None:
    """Raise `ModelError` unless `shape` is one the model allows for input `name`."""
    allowed = program.input_shapes.get(name)
    if not allowed:
        return
    if "range" in allowed:
        bounds = allowed["range"]
        ok = len(shape) == len(bounds) and all(
            lo <= d and (hi is None or d <= hi) for d, (lo, hi) in zip(shape, bounds, strict=True))
    else:
        ok = tuple(shape) in [tuple(s) for s in next(iter(allowed.values()))]
    if not ok:
        raise ModelError(f"input {name!r} has shape {tuple(shape)}, which the Core ML model does not allow "
                         f"({allowed}); pad or split the batch to an allowed shape")


def allowed_shapes(program: Program, name: str) -> list[tuple[int, ...]] | None:
    """The fixed or enumerated shapes of input `name`, or None when it takes a range of shapes."""
    allowed = program.input_shapes.get(name, {})
    if "range" in allowed or not allowed:
        return None
    return [tuple(s) for s in next(iter(allowed.values()))]
