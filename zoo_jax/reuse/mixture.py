"""Integrating models without merging their weights: Model-GLUE's model-level mixture, and stacking.

Both take the experts' outputs on a set of images (log-probabilities [E, N, K], and for the router
their penultimate features [E, N, D]) and are fitted on held-out labelled images (zoo_jax.merge: the
zoo's validation split, the one every merge decision uses):

  mixture   p(y | x) = sum_e g_e(x) p_e(y | x), with a router g = softmax(W f(x) + b) over the
            experts from the concatenation f(x) of their standardised features, fitted by the
            likelihood of the mixture (no expert label needed: the router learns which expert is
            right where). Model-GLUE's model-level mixture routes whole models, as here.
  stacking  a multinomial logistic regression on the concatenated expert log-probabilities
            (stacked generalisation, Wolpert 1992), regularised by cross-validation. Model-GLUE's stacking stacks the layers of
            language models and trains on; for CNN-s of one architecture the predictive form is the
            one that needs no further training.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import sklearn.linear_model
import sklearn.model_selection
import sklearn.pipeline
import sklearn.preprocessing

from zoo_jax.reuse import fitting


class Router(NamedTuple):
  """A fitted router: its weights and the feature statistics of the images it was fitted on."""

  kernel: np.ndarray  # [F, E]
  bias: np.ndarray  # [E]
  mean: np.ndarray  # [F]
  std: np.ndarray  # [F]

  def gates(self, features: np.ndarray) -> np.ndarray:
    """Each image's weights over the experts [N, E] from their features [E, N, D]."""
    x = (_concat(features) - self.mean) / self.std
    return np.asarray(jax.nn.softmax(x @ self.kernel + self.bias, axis=-1))


def _concat(features: np.ndarray) -> np.ndarray:
  """[E, N, D] -> [N, E * D]."""
  e, n, d = features.shape
  return np.transpose(features, (1, 0, 2)).reshape(n, e * d)


def log_softmax(logits: np.ndarray) -> np.ndarray:
  return np.asarray(jax.nn.log_softmax(jnp.asarray(logits), axis=-1))


def mixture_log_probs(gates: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
  """log sum_e g_e p_e(y): [N, K] from gates [N, E] and the experts' log-probabilities [E, N, K]."""
  weighted = np.log(np.maximum(gates.T, 1e-30))[:, :, None] + log_probs
  return np.asarray(jax.nn.logsumexp(jnp.asarray(weighted), axis=0))


def fit_router(
  features: np.ndarray,
  log_probs: np.ndarray,
  labels: np.ndarray,
  *,
  steps: int = 500,
  learning_rate: float = 0.01,
  weight_decay: float = 1e-3,
  seed: int = 0,
) -> Router:
  """The router maximising the mixture's log-likelihood of `labels` [N] (full batch, AdamW, one
  jitted scan) from the experts' features [E, N, D] and log-probabilities [E, N, K]."""
  flat = _concat(features)
  mean, std = flat.mean(0), flat.std(0) + 1e-8
  x = jnp.asarray(fitting.standardise(flat))
  picked = jnp.asarray(np.take_along_axis(log_probs, labels[None, :, None], -1)[..., 0].T)  # [N, E]
  e = log_probs.shape[0]
  params = {
    "kernel": 0.01 * jax.random.normal(jax.random.key(seed), (x.shape[1], e)),
    "bias": jnp.zeros(e),
  }

  def loss_fn(p):
    log_gates = jax.nn.log_softmax(x @ p["kernel"] + p["bias"], axis=-1)
    return -jnp.mean(jax.nn.logsumexp(log_gates + picked, axis=-1))

  p = fitting.full_batch_adamw(
    loss_fn, params, steps=steps, learning_rate=learning_rate, weight_decay=weight_decay
  )
  return Router(np.asarray(p["kernel"]), np.asarray(p["bias"]), mean, std)


def fit_stacking(
  log_probs: np.ndarray, labels: np.ndarray, regularisations=(0.003, 0.01, 0.03)
) -> sklearn.pipeline.Pipeline:
  """A logistic regression from the experts' concatenated, standardised log-probabilities
  [E, N, K] to `labels`, its inverse regularisation C of `regularisations` by 3-fold
  cross-validation on these images."""
  model = sklearn.pipeline.make_pipeline(
    sklearn.preprocessing.StandardScaler(), sklearn.linear_model.LogisticRegression(max_iter=2000)
  )
  search = sklearn.model_selection.GridSearchCV(
    model, {"logisticregression__C": list(regularisations)}, cv=3
  )
  return search.fit(_concat(log_probs), labels).best_estimator_


def stacking_predict(
  model: sklearn.linear_model.LogisticRegression, log_probs: np.ndarray
) -> np.ndarray:
  """The stacked prediction [N] from the experts' log-probabilities [E, N, K]."""
  return model.predict(_concat(log_probs))
