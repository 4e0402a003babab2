"""ZooD (Dong et al., NeurIPS 2022) in this project's terms: rank a zoo's models for a task with
several training domains, ensemble the top-K with feature selection, judge on an unseen domain.

The library half of `zoo_jax.select --config=configs/zood.py` (which runs it as a command):
  domain_features   penultimate features of the zoo's models on each domain's images
  zood_score        inter-class discriminability and inter-domain stability in one number, leave one
                    training domain out: a Bayesian linear model from the features to the one-hot
                    labels, its prior and noise precisions set by evidence maximisation (LogME's
                    fixed point) on the other domains, scored by the log predictive density of the
                    held-out domain's labels; the mean over held-out domains
  select_features   Bayesian feature selection by variational EM: a linear model from the
                    concatenated features of the top-K models to the one-hot labels, each feature
                    switched on or off by a binary indicator shared by all classes (spike and slab,
                    mean-field, as Carbonetto & Stephens' varbvs); the prior inclusion rate, slab and
                    noise variances are the M-step; a feature is kept if its posterior inclusion
                    probability exceeds `threshold`
  probe_accuracy    a multinomial logistic-regression head on frozen features, fitted on the training
                    domains, its accuracy on other images (the unseen domain)
ZooD's own code selects with a variational EM of this kind; the exact updates here are written from
the model above (the paper gives no more detail than that), not from its code.
"""

import numpy as np

from zoo_jax import data, zoo as zoo_lib
from zoo_jax.reuse import ranking
from zoo_jax.reuse.scores import logme


def domain_features(
  zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int, images: list[data.Dataset]
) -> list[np.ndarray]:
  """Per dataset of `images` (one per domain): the models' penultimate features [M, N_d, D].

  Every domain is normalised as the zoo's own dataset (a model's preprocessing is part of the
  model; the shift is in the images), and all go through one forward pass per cohort."""
  info = data.DATASETS[zoo.config["dataset"]["name"]]
  union = data.Dataset(
    name="domains",
    split="mixed",
    images=np.concatenate([d.images for d in images]),
    labels=np.concatenate([d.labels for d in images]),
    mean=info.mean,
    std=info.std,
    num_classes=info.num_classes,
  )
  feats = ranking.population_outputs(zoo, model_ids, epoch, union)[0]
  return np.split(feats, np.cumsum([len(d) for d in images])[:-1], axis=1)


def _standardise(fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
  mu, sd = fit.mean(0), fit.std(0) + 1e-8
  return [(x - mu) / sd for x in (fit,) + others]


def _onehot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return (labels[:, None] == np.arange(num_classes)[None]).astype(np.float64)


def predictive_score(
  f_fit: np.ndarray, y_fit: np.ndarray, f_held: np.ndarray, y_held: np.ndarray
) -> float:
  """Mean log predictive density per image and class of the held-out one-hot labels under the
  Bayesian linear model fitted (evidence-maximised) on (f_fit, y_fit)."""
  f_fit, f_held = _standardise(np.asarray(f_fit, np.float64), np.asarray(f_held, np.float64))
  f_fit = np.concatenate([f_fit, np.ones((len(f_fit), 1))], 1)  # a bias feature
  f_held = np.concatenate([f_held, np.ones((len(f_held), 1))], 1)
  num_classes = int(max(y_fit.max(), y_held.max())) + 1
  t_fit, t_held = _onehot(y_fit, num_classes), _onehot(y_held, num_classes)
  total = 0.0
  for c in range(num_classes):
    _, alpha, beta = logme.fixed_point(f_fit, t_fit[:, c])
    precision = alpha * np.eye(f_fit.shape[1]) + beta * f_fit.T @ f_fit
    mean = beta * np.linalg.solve(precision, f_fit.T @ t_fit[:, c])
    var = 1.0 / beta + np.einsum("nd,nd->n", f_held, np.linalg.solve(precision, f_held.T).T)
    err = t_held[:, c] - f_held @ mean
    total += np.mean(-0.5 * (np.log(2 * np.pi * var) + err**2 / var))
  return float(total / num_classes)


def zood_score(features: list[np.ndarray], labels: list[np.ndarray]) -> float:
  """One model's ZooD score from its features [N_d, D] and labels [N_d] on each training domain:
  the mean over domains d of `predictive_score` fitted on every other domain, scored on d."""
  if len(features) < 2:
    raise ValueError(f"ZooD's score needs at least 2 training domains, got {len(features)}.")
  out = []
  for d in range(len(features)):
    rest = [i for i in range(len(features)) if i != d]
    out.append(
      predictive_score(
        np.concatenate([features[i] for i in rest]),
        np.concatenate([labels[i] for i in rest]),
        features[d],
        labels[d],
      )
    )
  return float(np.mean(out))


def select_features(
  features: np.ndarray,
  labels: np.ndarray,
  *,
  threshold: float = 0.5,
  max_iter: int = 200,
  tol: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
  """(kept [F] bool, posterior inclusion probability [F]) of each feature column for the labels.

  Variational EM for T = X (s * B) + noise: T the centred one-hot labels [N, C], X the standardised
  features [N, F], s_j ~ Bernoulli(pi) one indicator per feature shared by all classes,
  B[j, c] ~ N(0, slab), noise N(0, sigma2). E-step: coordinate updates of q(s_j, B[j]) =
  p_j N(mu[j], s2_j) + (1 - p_j) delta_0; M-step: pi, slab and sigma2 in closed form.
  """
  x = _standardise(np.asarray(features, np.float64))[0]
  labels = np.asarray(labels)
  num_classes = int(labels.max()) + 1
  t = _onehot(labels, num_classes)
  t -= t.mean(0)
  n, f = x.shape
  xx = np.einsum("nf,nf->f", x, x)
  xt = x.T @ t  # [F, C]
  gram = x.T @ x
  sigma2, slab, pi = float(np.var(t)), 1.0 / f, 0.5
  p = np.full(f, 0.5)
  mu = np.zeros((f, num_classes))
  for _ in range(max_iter):
    p_old = p.copy()
    s2 = sigma2 / (xx + sigma2 / slab)
    fitted = gram @ (p[:, None] * mu)  # X'X E[W], [F, C]
    for j in range(f):
      fitted -= gram[:, j : j + 1] * (p[j] * mu[j])[None]
      mu[j] = s2[j] / sigma2 * (xt[j] - fitted[j])
      logit = (
        np.log(pi / (1 - pi))
        + 0.5 * num_classes * np.log(s2[j] / slab)
        + np.sum(mu[j] ** 2) / (2 * s2[j])
      )
      p[j] = 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))
      fitted += gram[:, j : j + 1] * (p[j] * mu[j])[None]
    w = p[:, None] * mu
    residual = np.sum(t**2) - 2 * np.sum(w * xt) + np.sum(w * (gram @ w))
    variance = np.sum(xx[:, None] * (p[:, None] * (mu**2 + s2[:, None]) - w**2))
    sigma2 = max((residual + variance) / (n * num_classes), 1e-10)
    slab = max(np.sum(p[:, None] * (mu**2 + s2[:, None])) / (num_classes * np.sum(p)), 1e-10)
    pi = float(np.clip(np.mean(p), 1.0 / f, 1 - 1.0 / f))
    if np.max(np.abs(p - p_old)) < tol:
      break
  return p > threshold, p


def probe_accuracy(
  f_train: np.ndarray,
  y_train: np.ndarray,
  f_test: list[np.ndarray],
  y_test: list[np.ndarray],
  seed: int = 0,
) -> list[float]:
  """Accuracy on each (f_test, y_test) of a logistic-regression head fitted on (f_train, y_train)."""
  from sklearn.linear_model import LogisticRegression

  fitted = _standardise(
    np.asarray(f_train, np.float64), *[np.asarray(f, np.float64) for f in f_test]
  )
  head = LogisticRegression(max_iter=1000, random_state=seed).fit(fitted[0], y_train)
  return [float(np.mean(head.predict(f) == y)) for f, y in zip(fitted[1:], y_test)]
