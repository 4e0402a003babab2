"""Model selection for a new target: cheap rankings of a zoo against brute-force fine-tuning.

  python -m zoo_jax.train --config=configs/select_zoo.py --workdir=/tmp/zoo_select
  python -m zoo_jax.select --config=configs/select.py --zoo=/tmp/zoo_select --target=fashion_mnist \
      --workdir=/tmp/select_fmnist
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.epoch = -1  # the zoo epoch whose weights are ranked (negative counts back from the newest)
  # The feature scores are the files of zoo_jax/reuse/scores/ (a new score: a new file, named here);
  # zero_shot, source_acc, learned and spider are select's own.
  c.methods = (
    "logme",
    "hscore",
    "ncc",
    "zero_shot",
    "source_acc",
    "short_finetune",
    "learned",
    "spider",
  )
  c.probe_size = 500  # target training images the feature scores see (one forward pass each)
  c.seed = 0  # probe subset, random subsets and random ensembles

  # The brute-force reference (and the learned ranker's training labels): one recipe for every model.
  c.finetune = ml_collections.ConfigDict()
  c.finetune.num_epochs = 2
  c.finetune.train_size = 1000  # target training images; None: all
  c.finetune.eval_size = 500  # target validation / test images; None: all
  c.finetune.optimizer = "adam"
  c.finetune.learning_rate = 1e-3
  c.finetune.weight_decay = 0.0
  c.finetune.dropout = 0.0
  c.finetune.num_models = ml_collections.config_dict.placeholder(
    int
  )  # None: all; N: a seeded random subset
  # The brute force a second time with other fine-tuning seeds: the tau between the two runs is
  # the noise ceiling every method's tau is read against (summary.json "noise_ceiling").
  c.finetune.noise_ceiling = True

  # The short_finetune method: the brute force's recipe cut short (a proxy that trains, not cheap).
  c.short_finetune = ml_collections.ConfigDict()
  c.short_finetune.num_epochs = 1
  c.short_finetune.train_size = 500

  c.learned = ml_collections.ConfigDict()
  # Tasks the learned ranker is trained on (the zoo is fine-tuned on each once); never the target.
  # The rotated Fashion-MNIST shares the target's images but not its task (other label geometry);
  # drop it for a ranker that never saw a Fashion-MNIST image.
  c.learned.train_tasks = ("mnist5k_rot90", "fashion_mnist_rot90")
  c.learned.predictor = "gbt"  # "gbt" (histogram gradient boosting) or "ridge"
  # Where the training tasks' fine-tuned zoos go; None: WORKDIR/tasks. Runs that share a folder
  # fine-tune each task once (e.g. one zoo ranked for several targets).
  c.learned.tasks_dir = ml_collections.config_dict.placeholder(str)

  # Model Spider (zoo_jax.reuse.spider), trained on learned.train_tasks too.
  c.spider = ml_collections.ConfigDict()
  c.spider.token_dim = 8  # each model's learned token
  c.spider.hidden = (64, 64)  # the fitness head's MLP
  c.spider.steps = 500  # full-batch AdamW steps of the pairwise ranking loss
  c.spider.learning_rate = 3e-3
  c.spider.rerank_k = 10  # the head's top models re-ranked with their NCC on the target (0: none)

  c.ensemble = ml_collections.ConfigDict()
  c.ensemble.sizes = (3, 5)  # K of the top-K ensembles
  c.ensemble.random_draws = 20  # random K-model ensembles averaged for the baseline
  c.progress_bar = False
  return c
