"""Model Spider (Zhang et al., NeurIPS 2023) in this project's terms: models and tasks as tokens, a
fitness head between them trained to rank on other tasks, re-ranking of the top candidates.

  model token   per zoo model: its StatNN weight embedding (z-scored over the zoo; no forward pass)
                and a learned vector of its own (`token_dim`; the zoo is the same on every task,
                as Model Spider's model zoo is, so each model can keep a trained token)
  task token    per task: what one fixed probe model of the zoo sees of the task's images: per
                penultimate feature, its mean, its spread and its between-class over within-class
                variance (log). Invariant to the order of the task's classes, so tasks with other
                label meanings compare.
  fitness head  an MLP on [model token, task token] -> a score, trained with the pairwise logistic
                ranking loss (RankNet) between the models of each training task, whose truth is
                their brute-force fine-tuned accuracy there
  re-ranking    the head's top `rerank_k` models get one forward pass on the target; their order
                among themselves becomes the mean of their head rank and their NCC rank (Model
                Spider's re-ranking with the candidates' own features); they stay above the rest
Only the probe model and the re-ranked candidates see the target's images: the cost of a ranking
does not grow with the zoo. The tokens and the head are plain functions here; zoo_jax.select's
`spider` method feeds them (zoo_jax.reuse.ranking.spider_scores).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.encoders import properties
from zoo_jax.reuse import fitting


def task_token(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """[3 D] token of a task from one probe model's features [N, D] on its images and their labels."""
  f = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  classes = np.unique(labels)
  means = np.stack([f[labels == c].mean(0) for c in classes])
  within = np.mean([f[labels == c].var(0) for c in classes], axis=0)
  ratio = np.log((means.var(0) + 1e-6) / (within + 1e-6))
  return np.concatenate([f.mean(0), f.std(0), ratio])


class Fitness(nn.Module):
  """score(model m, task) from [the model's features, its learned token, the task token]."""

  num_models: int
  token_dim: int = 8
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, model_features: jax.Array, task_token: jax.Array) -> jax.Array:
    """model_features [M, Dm], task_token [Dt] -> scores [M]."""
    tokens = self.param("tokens", nn.initializers.normal(0.1), (self.num_models, self.token_dim))
    task = jnp.broadcast_to(task_token, (model_features.shape[0], task_token.shape[-1]))
    x = jnp.concatenate([model_features, tokens, task], axis=-1)
    for width in self.hidden:
      x = nn.gelu(nn.Dense(width)(x))
    return nn.Dense(1)(x)[:, 0]


def fit_fitness(
  model_features: np.ndarray,
  task_tokens: np.ndarray,
  accuracies: np.ndarray,
  *,
  token_dim: int = 8,
  hidden: Sequence[int] = (64, 64),
  steps: int = 500,
  learning_rate: float = 3e-3,
  weight_decay: float = 1e-3,
  seed: int = 0,
) -> tuple[Fitness, Any]:
  """The fitness head trained on T tasks: model_features [M, Dm] (standardised), task_tokens
  [T, Dt] (standardised), accuracies [T, M] (NaN: a fine-tune that failed, ranked below every
  other model of its task). Full-batch AdamW on the mean over tasks of the pairwise ranking loss
  between each task's models."""
  model = Fitness(len(model_features), token_dim, tuple(hidden))
  m = jnp.asarray(model_features, jnp.float32)
  t = jnp.asarray(task_tokens, jnp.float32)
  acc = jnp.asarray(np.nan_to_num(np.asarray(accuracies, np.float64), nan=-1.0), jnp.float32)
  params = model.init(jax.random.key(seed), m, t[0])

  def loss_fn(p):
    scores = jax.vmap(lambda token: model.apply(p, m, token))(t)  # [T, M]
    per_task = jax.vmap(lambda s, y: properties.ranking_loss(s[:, None], y[:, None]))(scores, acc)
    return jnp.mean(per_task)

  params = fitting.full_batch_adamw(
    loss_fn, params, steps=steps, learning_rate=learning_rate, weight_decay=weight_decay
  )
  return model, params


def fitness(
  model: Fitness, params: Any, model_features: np.ndarray, token: np.ndarray
) -> np.ndarray:
  """The head's scores [M] of every model for one task token (higher: predicted to fit better)."""
  return np.asarray(
    model.apply(params, jnp.asarray(model_features, jnp.float32), jnp.asarray(token, jnp.float32)),
    np.float64,
  )


def rerank(head: np.ndarray, candidates: np.ndarray, candidate_scores: np.ndarray) -> np.ndarray:
  """Final scores [M]: the candidates (indices, the head's top) ordered among themselves by the
  mean of their head rank and their `candidate_scores` rank, above every other model, which keep
  the head's order."""
  head = np.asarray(head, np.float64)
  out = (np.argsort(np.argsort(head)) / len(head)).astype(np.float64)  # the head's ranks in [0, 1)
  if len(candidates):
    rank = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(len(x) - 1, 1)
    out[candidates] = 1.0 + 0.5 * (rank(head[candidates]) + rank(np.asarray(candidate_scores)))
  return out
