"""zoo_jax: model zoos in JAX. Train populations of networks, learn on their weights, sample new ones."""

__version__ = "0.1.0"
