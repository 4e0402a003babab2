"""Learning on a zoo's weights: encoders, the states they read, and the probes that score them.

methods/       one file per `config.method` of zoo_jax.encode (statnn, flat, deepsets, sne,
               hyperrep), each with its network; methods/__init__.py states the contract
baselines.py   networks shared by several methods (flat MLP, DeepSets, token padding)
training.py    the minibatch loop every learned encoder trains with (resumable checkpoints)
states.py      a zoo's usable states (model, epoch) as flat weights plus their properties
streaming.py   the same, read from disk in blocks for zoos larger than memory
properties.py  the properties predicted, the probes (ridge, GBT, MLP) and the scores (R^2, tau)
"""

# Where an encode workdir keeps seed 0's trained encoder (hyperrep.save), for zoo_jax.sample.
ENCODER_DIR = "encoder"
