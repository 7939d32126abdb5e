"""numpy/scipy BLAS threads, limited for the length of a block (the one home of this rule).

On busy shared cores the BLAS thread pool oversubscribes them: measured on 2 loaded cores, a
64x384 @ 384x1536 matmul took 111 ms with 2 OpenBLAS threads vs 13 ms with 1 (MIL evaluator), and
the TF-IDF logistic regression fit ran 30x slower with the default pool. The limit is threadpoolctl's
(it comes with scikit-learn, the `train` extra) and is restored when the block ends; without
threadpoolctl the block runs with numpy's pool as it is.
"""

from __future__ import annotations

import contextlib
from typing import Any


def blas_threads(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """A context manager limiting BLAS to `threads` threads inside it (None or 0: no limit)."""
    if not threads:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads), user_api="blas")
