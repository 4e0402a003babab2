"""Task arithmetic (Ilharco et al., 2023): ancestor + lambda * the sum of the task vectors, lambda of
`config.scales` picked by validation accuracy; named task_arithmetic_lambda_<lambda>."""

from zoo_jax.reuse.mergers import Context, Merged, _task_vectors

NEEDS_ANCESTOR = True


def merge(context: Context) -> list[Merged]:
  origin, tau = _task_vectors.task_vectors(context)
  return [_task_vectors.best_scaled(context, "task_arithmetic", origin, tau.sum(0))]
