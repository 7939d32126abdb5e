"""edgekd benchmark suite: `python -m benchmarks [STEP ...]` (see RESULTS.md)."""
