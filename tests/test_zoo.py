"""The zoo store beyond training: lazy reads of a selection, slice into a smaller zoo, export."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import tensorstore as ts
import pandas as pd
import pytest

from zoo_jax import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_params_reads_only_the_selected_cohorts_and_rows(tiny_zoo, monkeypatch):
  z = zoo.Zoo(tiny_zoo)
  full = zoo.restore_numpy(z._manager, 2)
  ids = [13, 2, 13, 6]
  opened, original = [], ts.open

  def spy(spec, *args, **kwargs):
    if isinstance(spec, dict) and spec.get("driver") in ("zarr", "zarr3"):  # array leaves
      opened.append(spec["kvstore"]["path"])
    return original(spec, *args, **kwargs)

  monkeypatch.setattr(ts, "open", spy)
  params = z.params(ids, epoch=2)
  rows = z.models.set_index("model_id").loc[ids]
  for i, (c, index) in enumerate(zip(rows["cohort"], rows["cohort_index"])):
    jax.tree.map(
      lambda got, want: np.testing.assert_array_equal(got[i], want[index]),
      params,
      full[str(c)]["params"],
    )
  assert {name.split(".")[0] for name in opened} == {str(c) for c in rows["cohort"]}
  assert all(".params." in name for name in opened)  # no metrics, no other cohort


def test_slice_reads_back_and_matches_the_source(tiny_zoo, tmp_path):
  src = zoo.Zoo(tiny_zoo)
  ids = src.select(activation="relu", learning_rate=1e-2)  # from two cohorts (adam, sgd)
  dst = str(tmp_path / "slice")
  sliced = zoo.slice_zoo(tiny_zoo, dst, ids, epochs=[0, -1])
  assert sliced.epochs == [0, 3] and len(sliced.models) == len(ids) == 4
  np.testing.assert_array_equal(sliced.models["source_model_id"], ids)
  assert sorted(sliced.models["cohort"].unique()) == [0, 1]
  columns = [c for c in src.models.columns if c not in ("model_id", "cohort", "cohort_index")]
  pd.testing.assert_frame_equal(
    sliced.models[columns], src.models.loc[ids, columns].reset_index(drop=True)
  )
  for epoch in (0, 3):
    jax.tree.map(
      np.testing.assert_array_equal, sliced.params(epoch=epoch), src.params(ids, epoch=epoch)
    )
    want = src.metrics[(src.metrics["epoch"] == epoch) & src.metrics["model_id"].isin(ids)]
    got = sliced.metrics[sliced.metrics["epoch"] == epoch]
    np.testing.assert_array_equal(got["model_id"], np.arange(4))
    pd.testing.assert_frame_equal(
      got.drop(columns="model_id").reset_index(drop=True),
      want.drop(columns="model_id").reset_index(drop=True),
    )
  # The checkpoint's own metrics agree with the table (a slice of a slice reads them back).
  again = zoo.slice_zoo(dst, str(tmp_path / "slice2"), [3, 1], epochs=[3])
  jax.tree.map(
    np.testing.assert_array_equal, again.params(epoch=3), src.params(ids[[1, 3]], epoch=3)
  )
  np.testing.assert_array_equal(
    again.metrics["test_acc"], sliced.metrics.query("epoch == 3")["test_acc"].iloc[[1, 3]]
  )
  assert zoo.slice_zoo(tiny_zoo, dst, ids, epochs=[0, -1]).epochs == [
    0,
    3,
  ]  # same slice again: nothing to do
  with pytest.raises(ValueError, match="holds another zoo or another selection"):
    zoo.slice_zoo(tiny_zoo, dst, ids, epochs=[1])
  with pytest.raises(ValueError, match="Epoch 9 is not in zoo"):
    zoo.slice_zoo(tiny_zoo, str(tmp_path / "other"), ids, epochs=[9])
  assert not os.path.exists(tmp_path / "other" / zoo.MODELS_FILE)


def test_parse_select_and_epochs():
  assert zoo.parse_select(
    "activation=tanh,optimizer=adam|sgd,status=ok,min_test_acc=0.5,model_id=3|7"
  ) == {
    "activation": ["tanh"],
    "optimizer": ["adam", "sgd"],
    "status": "ok",
    "min_test_acc": 0.5,
    "model_id": [3, 7],
  }
  assert zoo.parse_epochs("0,5,-1") == [0, 5, -1] and zoo.parse_epochs("") is None
  with pytest.raises(ValueError, match="--select takes FIELD=VALUE"):
    zoo.parse_select("activation")
  with pytest.raises(ValueError, match="--epochs must be"):
    zoo.parse_epochs("1,two")


# Reads an export with numpy, safetensors and the csv module only: JAX and pandas cannot be imported.
_READER = textwrap.dedent("""
    import csv, json, sys
    sys.modules["jax"] = sys.modules["pandas"] = sys.modules["orbax"] = None
    import numpy as np
    from safetensors.numpy import load_file
    dst = sys.argv[1]
    out = {}
    for epoch in (0, 3):
      tensors = load_file(f"{dst}/epoch_{epoch:04d}.safetensors")
      for name, value in tensors.items():
        if name.endswith("/model_id"):
          cohort = name.split("/")[0]
          kernel = tensors[f"{cohort}/params/conv_0/kernel"]
          for i, model_id in enumerate(value):
            out[f"{epoch}/{model_id}"] = kernel[i].ravel().tolist()
    models = list(csv.DictReader(open(f"{dst}/models.csv")))
    print(json.dumps({"kernels": out, "models": [int(m["model_id"]) for m in models]}))
""")


@pytest.mark.slow
def test_export_is_readable_without_jax_and_cli_errors_are_one_line(tiny_zoo, tmp_path):
  src, dst = zoo.Zoo(tiny_zoo), str(tmp_path / "export")
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  cli = [sys.executable, "-m", "zoo_jax.zoo"]
  done = subprocess.run(
    cli
    + [
      "export",
      f"--src={tiny_zoo}",
      f"--dst={dst}",
      "--epochs=0,-1",
      "--select=activation=tanh,model_id=0|1|5|7",
    ],
    env=env,
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert sorted(os.listdir(dst)) == [
    ".lock",  # the writer lock: an export takes it as every writing command
    "config.json",
    "epoch_0000.safetensors",
    "epoch_0003.safetensors",
    "metrics.csv",
    "models.csv",
  ]
  ids = src.select(activation="tanh", model_id=[0, 1, 5, 7])
  read = subprocess.run([sys.executable, "-c", _READER, dst], capture_output=True, text=True)
  assert read.returncode == 0, read.stderr[-3000:]
  result = json.loads(read.stdout)
  assert result["models"] == ids.tolist()
  for epoch in (0, 3):
    kernels = src.params(ids, epoch=epoch)["conv_0"]["kernel"]
    for model_id, kernel in zip(ids, kernels):
      np.testing.assert_array_equal(
        np.asarray(result["kernels"][f"{epoch}/{model_id}"], np.float32), kernel.ravel()
      )
  with open(os.path.join(dst, "config.json")) as f:
    assert json.load(f)["epochs"] == [0, 3]
  bad = subprocess.run(
    cli + ["slice", f"--src={tiny_zoo}", f"--dst={tmp_path / 'bad'}", "--epochs=0,x"],
    env=env,
    capture_output=True,
    text=True,
  )
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
    "error: --epochs must be"
  )
  assert "Traceback" not in bad.stderr and not os.path.exists(tmp_path / "bad")
