"""Encoders over a zoo's weights: hyper-representations, SNE, and the baselines."""
