"""logoapp's benchmarks: every figure is a ratio of two things measured side by side, in one run, on this machine.

Run `python -m benchmarks [--quick] [--json]`. Absolute timings on a shared machine are noise; ratios of
interleaved, repeated measurements (medians) are what the goals are judged on.
"""
