"""A zoo on disk under faults: two writers, damaged or lost tables and config, lost steps,
SIGINT, corrupted arrays, a full disk. Each ends refused or repaired, with one clear line,
and no committed data lost; `zoo check` finds every planted fault."""

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest

from commands import lock_held_elsewhere, one_error_line, run_command
from conftest import tiny_zoo_config
from test_train import assert_same_zoo
from zoo_jax import cli, errors, train, zoo
from zoo_jax.zoo import lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tiny_zoo_config cut to one cohort (tanh, adam) of 4 models and 2 epochs; the same as flags:
FLAGS = [
  "--config=configs/mnist5k.py",
  "--config.dataset.train_size=500",
  "--config.dataset.eval_size=500",
  "--config.population.num_seeds=2",
  "--config.population.grid.learning_rate=(1e-3,1e-2)",
  "--config.num_epochs=2",
  "--config.batch_size=25",
  "--config.progress_bar=False",
]


def fault_config(**overrides):
  c = tiny_zoo_config()
  c.population.grid.activation = ("tanh",)
  c.population.grid.optimizer = ("adam",)
  c.num_epochs = 2
  c.update_from_flattened_dict(overrides)
  return c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The one zoo trained in this module; every fault case damages a copy of it."""
  workdir = str(tmp_path_factory.mktemp("faults") / "reference")
  train.train_and_evaluate(fault_config(), workdir)
  return workdir


@pytest.fixture
def copy(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  shutil.copytree(reference, workdir)
  return workdir


def _file(workdir, name):
  with open(os.path.join(workdir, name), "rb") as f:
    return f.read()


def test_reference_zoo_passes_check_and_tables_have_normal_permissions(reference):
  report = zoo.check(reference)
  assert report.ok, str(report)
  umask = os.umask(0)
  os.umask(umask)
  for name in (zoo.CONFIG_FILE, zoo.MODELS_FILE, zoo.METRICS_FILE):
    assert os.stat(os.path.join(reference, name)).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.slow
def test_two_train_commands_at_once_one_trains_the_other_is_refused(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  command = [sys.executable, "-m", "zoo_jax.train", *FLAGS, f"--workdir={workdir}"]
  # XLA_FLAGS set (empty): no CLI default device split, so the run computes as the in-process reference.
  env = dict(os.environ, XLA_FLAGS="")
  started = time.time()
  procs = [
    subprocess.Popen(
      command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    for _ in range(2)
  ]
  ended = {}
  while len(ended) < 2:
    for i, p in enumerate(procs):
      if i not in ended and p.poll() is not None:
        ended[i] = time.time() - started
    time.sleep(0.05)
  outs = [p.communicate() for p in procs]
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, cli.USAGE_EXIT_CODE], [o[1][-2000:] for o in outs]
  loser = [i for i, p in enumerate(procs) if p.returncode != 0][0]
  winner = 1 - loser
  line = one_error_line(outs[loser][1])
  assert "is being written by pid" in line and str(procs[winner].pid) in line
  # Refused at once: the lock is taken before the slow imports (cli.lock_workdir_early).
  assert ended[loser] < 5.0 and ended[loser] < ended[winner]
  print(f"loser exited after {ended[loser]:.1f} s, winner after {ended[winner]:.1f} s")
  assert_same_zoo(workdir, reference)
  assert zoo.check(workdir).ok


def test_a_lock_held_by_another_process_is_refused_naming_it(tmp_path):
  with lock_held_elsewhere(str(tmp_path)) as pid:
    assert lock.holder(str(tmp_path))["pid"] == pid
    with pytest.raises(errors.WorkdirLocked, match=f"is being written by pid {pid} on host"):
      with lock.workdir_lock(str(tmp_path)):
        pass
  # Its holder died (killed) without releasing it: taken over, with a warning naming it.
  assert lock.holder(str(tmp_path)) is None
  with pytest.warns(
    UserWarning, match=f"Took over the lock.*pid {pid}.*ended without releasing it"
  ):
    with lock.workdir_lock(str(tmp_path)):
      with lock.workdir_lock(str(tmp_path)):  # re-entrant in one process
        assert lock.holder(str(tmp_path))["pid"] == os.getpid()
  assert lock.holder(str(tmp_path)) is None


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(100)


def _garbage(path):
  with open(path, "wb") as f:
    f.write(b"\x00\xff garbage \x01\n\"unclosed,quote\n")


@pytest.mark.parametrize(
  "damage", [_truncate, os.remove, _garbage], ids=["truncated", "deleted", "garbage"]
)
@pytest.mark.parametrize("name", [zoo.METRICS_FILE, zoo.MODELS_FILE, zoo.CONFIG_FILE])
def test_a_damaged_table_is_derived_exactly_then_rebuilt_by_the_trainrun_command(
  reference, copy, name, damage, capsys
):
  original = _file(reference, name)
  damage(os.path.join(copy, name))
  report = zoo.check(copy)
  assert not report.ok and any(name in p for p in report.problems), str(report)
  with pytest.warns(UserWarning, match=f"{name}.*(exact)"):  # the reader derives it, and says so
    z = zoo.Zoo(copy)
  reference_zoo = zoo.Zoo(reference)
  pd.testing.assert_frame_equal(z.metrics, reference_zoo.metrics)
  pd.testing.assert_frame_equal(z.models, reference_zoo.models)
  assert z.config == reference_zoo.config
  train.train_and_evaluate(
    fault_config(), copy
  )  # the same command again: repairs, never "nothing to do"
  out = capsys.readouterr().out
  assert "Rebuilt" in out or "Rewrote" in out
  assert "nothing to do" not in out
  assert _file(copy, name) == original
  assert zoo.check(copy).ok


def test_check_repair_rewrites_every_table_exactly(reference, copy):
  for name in (zoo.METRICS_FILE, zoo.MODELS_FILE, zoo.CONFIG_FILE):
    _truncate(os.path.join(copy, name))
  report = zoo.check(copy, repair=True)
  assert report.ok and len(report.repaired) == 3, str(report)
  for name in (zoo.METRICS_FILE, zoo.MODELS_FILE, zoo.CONFIG_FILE):
    assert _file(copy, name) == _file(reference, name)


def test_a_lost_config_of_a_zoo_without_a_kept_copy_is_one_clear_error(copy):
  shutil.rmtree(
    os.path.join(copy, zoo.CHECKPOINTS_DIR, "metadata")
  )  # as zoos written before it was kept
  _garbage(os.path.join(copy, zoo.CONFIG_FILE))
  with pytest.raises(
    errors.DamagedZoo, match=f"{zoo.CONFIG_FILE} is not valid JSON.*keeps no copy"
  ):
    zoo.Zoo(copy)
  with pytest.raises(
    errors.DamagedZoo, match=f"{zoo.CONFIG_FILE} is not valid JSON.*overwrite=True"
  ):
    train.train_and_evaluate(fault_config(), copy)
  report = zoo.check(copy, repair=True)
  assert not report.ok and zoo.CONFIG_FILE in report.problems[0]
  assert zoo.committed_epochs(copy) == [0, 1, 2]


def test_metric_values_edited_in_the_table_are_found_and_repaired(reference, copy):
  table = pd.read_csv(os.path.join(copy, zoo.METRICS_FILE))
  table.loc[5, "test_acc"] = 0.999
  table.to_csv(os.path.join(copy, zoo.METRICS_FILE), index=False)
  report = zoo.check(copy)
  assert not report.ok and "test_acc of model" in report.problems[0], str(report)
  assert zoo.check(copy, repair=True).ok
  assert _file(copy, zoo.METRICS_FILE) == _file(reference, zoo.METRICS_FILE)


def test_deleted_newest_checkpoint_step_is_refused_by_the_reader_and_retrained(
  reference, copy, capsys
):
  shutil.rmtree(os.path.join(copy, zoo.CHECKPOINTS_DIR, "2"))
  with pytest.raises(
    errors.DamagedZoo, match="metrics.csv has rows of epochs \\[2\\] whose weights are missing"
  ):
    zoo.Zoo(copy)
  assert not zoo.check(copy).ok
  with pytest.warns(UserWarning, match="checkpoints/2 is missing.*training epoch 2 again"):
    train.train_and_evaluate(fault_config(), copy)
  assert "Resuming the zoo" in capsys.readouterr().out
  assert_same_zoo(copy, reference)
  assert zoo.check(copy).ok


def test_deleted_newest_state_step_keeps_a_complete_zoo(reference, copy, capsys):
  shutil.rmtree(os.path.join(copy, zoo.STATE_DIR, "2"))
  assert zoo.check(copy).ok  # the zoo is its checkpoints and tables; state/ is only for continuing
  train.train_and_evaluate(fault_config(), copy)
  assert "complete (2 epochs); nothing to do" in capsys.readouterr().out
  assert_same_zoo(copy, reference)


def test_deleted_middle_checkpoint_step_is_refused_with_one_clear_error(copy):
  shutil.rmtree(os.path.join(copy, zoo.CHECKPOINTS_DIR, "1"))
  report = zoo.check(copy)
  assert not report.ok and any("lacks the steps of epochs [1]" in p for p in report.problems), str(
    report
  )
  with pytest.raises(
    errors.DamagedZoo, match="checkpoints/1 is missing while later epochs are committed"
  ):
    train.train_and_evaluate(fault_config(), copy)
  assert zoo.committed_epochs(copy) == [0, 2]  # nothing else deleted


def test_corrupted_array_file_is_found_by_check_and_reads_fail_clearly(reference, copy):
  for root, _, files in os.walk(os.path.join(copy, zoo.CHECKPOINTS_DIR, "1")):
    for name in files:
      if "manifest" in name or root.endswith("d"):
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(8)
  report = zoo.check(copy)
  assert not report.ok and "checkpoints/1 is unreadable" in report.problems[0], str(report)
  with pytest.raises(ValueError, match="Checkpoint step 1 .* is unreadable"):
    zoo.Zoo(copy).params(epoch=1)
  assert _file(copy, zoo.METRICS_FILE) == _file(
    reference, zoo.METRICS_FILE
  )  # --repair would not guess


def test_a_full_disk_leaves_the_table_as_it_was(reference, copy, monkeypatch):
  _truncate(os.path.join(copy, zoo.METRICS_FILE))
  damaged = _file(copy, zoo.METRICS_FILE)

  to_csv = pd.DataFrame.to_csv

  def full(self, path_or_buf=None, **kwargs):  # writing into a file fails as on a full disk
    if path_or_buf is None:
      return to_csv(self, **kwargs)
    path_or_buf.write("model_id,ep")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(pd.DataFrame, "to_csv", full)
  with pytest.raises(
    errors.UsageError, match="Cannot write .*metrics.csv: No space left on device.*Free some space"
  ):
    train.train_and_evaluate(fault_config(), copy)
  assert _file(copy, zoo.METRICS_FILE) == damaged
  assert not [n for n in os.listdir(copy) if n.startswith(".tmp")]
  monkeypatch.undo()
  train.train_and_evaluate(fault_config(), copy)
  assert _file(copy, zoo.METRICS_FILE) == _file(reference, zoo.METRICS_FILE)


def test_sigint_while_starting_ends_the_command_even_inside_an_ignored_callback(tmp_path):
  # A Ctrl-C that lands while Python runs a callback whose exceptions it ignores (jaxlib's
  # garbage-collection callback, as seen in CI) must still end the command, with one line.
  script = (
    "import gc, os, signal, sys, time\n"
    "from zoo_jax import cli\n"
    f"sys.argv = ['cmd', '--workdir={tmp_path}']\n"
    "cli.lock_workdir_early()\n"
    "def callback(phase, info):\n"
    "  if phase == 'start':\n"
    "    os.kill(os.getpid(), signal.SIGINT)\n"
    "    time.sleep(0.2)\n"
    "gc.callbacks.append(callback)\n"
    "gc.collect()\n"
    "gc.callbacks.remove(callback)\n"
    "print('carried on')\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
  )
  assert proc.returncode == cli.INTERRUPTED_EXIT_CODE, proc.stderr[-2000:]
  assert "carried on" not in proc.stdout
  assert one_error_line(proc.stderr).startswith("error: interrupted while starting")
  assert lock.holder(str(tmp_path)) is None
  # the next run takes the lock without a stale-holder warning:
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    with lock.workdir_lock(str(tmp_path)):
      pass


@pytest.mark.slow
def test_sigint_ends_with_one_line_and_keeps_committed_epochs(reference, copy):
  command = [
    sys.executable,
    "-m",
    "zoo_jax.train",
    *FLAGS,
    "--config.num_epochs=4",
    f"--workdir={copy}",
  ]
  proc = subprocess.Popen(
    command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  deadline = time.time() + 300
  # The lock is taken before the imports (cli.lock_workdir_early): a Ctrl-C there is one line too.
  while lock.holder(copy) is None and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(1.0)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == cli.INTERRUPTED_EXIT_CODE, err[-2000:]
  assert "interrupted" in one_error_line(err)
  assert lock.holder(copy) is None  # released
  z, ref = zoo.Zoo(copy), zoo.Zoo(reference)
  assert z.epochs[:3] == [0, 1, 2]
  pd.testing.assert_frame_equal(z.metrics[z.metrics["epoch"] <= 2], ref.metrics)
  assert zoo.check(copy).ok


@pytest.mark.slow
def test_command_lines_end_usage_errors_with_one_line_and_exit_code_2(tmp_path):
  # (`zoo check` passing, and a misspelt flag: tests/test_train.py's command-line test.)
  result, _ = run_command(
    "zoo_jax.encode",
    "--config=configs/statnn.py",
    f"--zoo={tmp_path}",
    f"--workdir={tmp_path / 'out'}",
  )
  assert result.returncode == 2 and "is not a zoo" in one_error_line(result.stderr)
  result, _ = run_command(
    "zoo_jax.train", *FLAGS, "--config.batch_size=0", f"--workdir={tmp_path / 'z'}"
  )
  assert result.returncode == 2 and "config.batch_size must be an integer >= 1" in one_error_line(
    result.stderr
  )


def test_a_full_disk_inside_another_library_is_recognised():
  """Orbax / TensorStore wrap ENOSPC in their own errors: the CLI still reports one line for it."""
  try:
    try:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as inner:
      raise RuntimeError("tensorstore write failed") from inner
  except RuntimeError as wrapped:
    assert cli.disk_full(wrapped)
  assert cli.disk_full(ValueError("OUT_OF_RANGE: No space left on device [while writing]"))
  assert not cli.disk_full(ValueError("config.num_epochs must be an integer >= 0"))
  assert not cli.disk_full(OSError(errno.EACCES, "Permission denied"))


@pytest.mark.slow
def test_the_headline_command_without_the_tfds_extra_is_one_line_naming_the_fix(tmp_path):
  fake = tmp_path / "site" / "tensorflow_datasets"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text("raise ImportError('No module named tensorflow_datasets')\n")
  workdir = tmp_path / "zoo"
  result, _ = run_command(
    "zoo_jax.train",
    "--config=configs/mnist.py",
    f"--workdir={workdir}",
    env={"PYTHONPATH": os.pathsep.join([str(fake.parent), ROOT])},
  )
  assert result.returncode == 2
  line = one_error_line(result.stderr)
  assert "pip install -e '.[tfds]'" in line and "configs/mnist5k.py" in line
  assert not os.path.exists(workdir)  # a failed start leaves nothing behind


@pytest.mark.slow
def test_config_file_errors_and_unknown_fields_are_one_line(tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  raising = tmp_path / "raising.py"
  raising.write_text("def get_config():\n  return {}['missing']\n")
  cases = [
    ([f"--config={broken}"], "the config file .*broken.py has a syntax error at line 1"),
    (
      [f"--config={raising}"],
      "the config file .*raising.py raised KeyError: 'missing' \\(line 2\\)",
    ),
    ([f"--config={tmp_path / 'nowhere.py'}"], "the config file .*nowhere.py' does not exist"),
    (
      ["--config=configs/mnist5k.py", "--config.num_epoch=3"],
      "unknown config field 'num_epoch' in '--config.num_epoch=3'; did you mean num_epochs\\?",
    ),
  ]
  for args, expected in cases:
    result, _ = run_command("zoo_jax.train", *args, f"--workdir={tmp_path / 'zoo'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.search(expected, one_error_line(result.stderr)), result.stderr
    assert not os.path.exists(tmp_path / "zoo")


def test_a_full_disk_is_one_line_without_the_libraries_tracebacks(tmp_path):
  """What Orbax does on a full disk: its threads fail and log tracebacks, then the save raises a
  wrapped ENOSPC. The command prints the one error line; ZOO_JAX_TRACEBACK=1 shows the rest."""
  script = tmp_path / "full_disk.py"
  script.write_text(
    "import errno, threading\n"
    "from absl import logging\n"
    "from zoo_jax import cli\n"
    "def main(argv):\n"
    "  def background():\n"
    "    raise RuntimeError('Event loop is closed')\n"
    "  thread = threading.Thread(target=background)\n"
    "  thread.start()\n"
    "  thread.join()\n"
    "  logging.exception('Save Finalize thread failed')\n"
    "  raise RuntimeError('RESOURCE_EXHAUSTED: writing \"/zoo/state/5\"') from OSError(\n"
    "    errno.ENOSPC, 'No space left on device')\n"
    "cli.run(main)\n"
  )
  result = subprocess.run(
    [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 2
  assert "the disk is full (writing /zoo/state/5)" in one_error_line(result.stderr)
  verbose = subprocess.run(
    [sys.executable, str(script)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "ZOO_JAX_TRACEBACK": "1"},
  )
  assert verbose.stderr.count("Traceback") >= 2 and "Event loop is closed" in verbose.stderr
