"""Using a zoo: rank its models for a new task, fine-tune them, ensemble them, merge them.

The library behind the commands zoo_jax.select, zoo_jax.finetune and zoo_jax.merge (which keep only
their config checks, their flow and their outputs); no absl here.

  penultimate.py   what a population computes on images: logits and penultimate features (the head's
                   input, caught while the model's own __call__ runs), and every layer's outputs
  scores/          transferability scores, one file each (logme.py, hscore.py, ncc.py), each exposing
                   `score(features [N, F], labels [N]) -> float`; the registry and contract in
                   scores/__init__.py
  ranking.py       a zoo's models ranked for a target: every score and the zero-shot accuracy on a probe
                   of target images (task_scores), the brute-force reference (brute_force) and its
                   noise ceiling (noise_ceiling), the rankers trained on other tasks (training_tasks,
                   learned_scores, spider_scores), top-K ensembles (ensembles), how good a ranking
                   is (ranking_metrics)
  spider.py        Model Spider: model and task tokens, the fitness head and its ranking loss,
                   re-ranking of the top candidates
  fitting.py       the small heads' shared fitting: standardised inputs, full-batch AdamW in one scan
  mixture.py       Model-GLUE's integration of merged models: the learned router (a model-level
                   mixture) and stacking
  zood.py          ZooD across domains: the leave-one-domain-out score, variational-EM feature
                   selection, the linear head on concatenated features
  finetuning.py    fine-tuning a zoo's models on a dataset as one zoo run of the population engine
                   (finetune, source_table), and the dataset check the commands share (check_dataset)
  merging.py       weight-space math shared by the merge methods: population pytree helpers (stack,
                   take, mean, flat, unflatten), the evaluator, alignment to a reference model,
                   clustering, interpolation and loss-barrier curves
  mergers/         merge methods, one file each (uniform_soup.py, greedy_soup.py, aligned_average.py,
                   clusters.py, task_arithmetic.py, ties.py, glue.py), each exposing
                   `merge(context: mergers.Context) -> list[mergers.Merged]`; the registry and contract
                   in mergers/__init__.py

Adding a ranking score: a new file in scores/ exposing `score(features, labels) -> float`, plus its name
in configs/select.py's `methods`; zoo_jax.select computes it for every model, reports its ranking and
feeds it to the learned ranker. Adding a merge method: a new file in mergers/ exposing
`merge(context) -> list[Merged]` (and `NEEDS_ANCESTOR = True` if it merges task vectors), plus its name
in configs/merge.py's `methods`. Neither command changes: both families are found by their folder's
files (zoo_jax.registry), and an unknown name in a config is a ValueError naming the field and the
allowed values.
"""
