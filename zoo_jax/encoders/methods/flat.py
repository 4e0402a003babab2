"""The flat weight vector itself as features (one architecture)."""

from zoo_jax.encoders import methods

METHOD = methods.FeatureMethod(featurizer=lambda fit: lambda states: states.flat)
