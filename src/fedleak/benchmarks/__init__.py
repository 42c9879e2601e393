"""Evaluation sets that no fedleak default was chosen on: :mod:`fedleak.benchmarks.benign_zoo`, ordinary benign
models in ordinary states, for the open-world false-alarm rate of the client-side detectors."""
