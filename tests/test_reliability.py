"""Scale-out and reliability: two processes vs one, SIGTERM, kill -9, a damaged checkpoint,
non-finite steps, host memory over a long run, and no pickles in checkpoints or datasets."""

import importlib.util
import json
import math
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import portpicker
import psutil
import pytest

from experiments import runs as runs_lib
from mmjax import checkpoint
from mmjax import corrupt
from mmjax.training import steps
from mmjax.training import train
from mmjax import workdir as workdirs
from mmjax import writers
from tests.conftest import REPO, run_python, start_python, tiny_config

TINY = 'tests/scripts/tiny_config.py'
TIMING = writers.TIMING_KEYS
# Long enough that a signal sent once the first metrics line appears lands mid-run; checkpoints
# every 8 steps make a kill during an (asynchronous) save likely.
LONG = ['--config.num_train_steps=200', '--config.log_every_steps=4',
        '--config.evals.validation.every_steps=100', '--config.checkpoint_every_steps=8']


@pytest.fixture(scope='module')
def cli_env(tmp_path_factory):
  """CPU, and a compilation cache so that runs of the same program compile once."""
  return {'JAX_PLATFORMS': 'cpu',
          'JAX_COMPILATION_CACHE_DIR': str(tmp_path_factory.mktemp('jax_cache')),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


def _cli(workdir, *extra):
  return ['-m', 'mmjax.main', f'--config={TINY}', f'--workdir={workdir}', *LONG, *extra]


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cli_env):
  """An uninterrupted run of the command the interrupted ones repeat."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  proc = run_python(_cli(workdir), cli_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def _metrics(workdir, drop=TIMING):
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in lines]


def _final_state(workdir):
  """The whole train state of the latest checkpoint, on this process's first device."""
  mngr = checkpoint.manager(pathlib.Path(workdir) / 'checkpoints', None, create=False)
  try:
    step, state = checkpoint.restore_arrays(
        mngr, ('step', 'params', 'batch_stats', 'opt_state', 'nonfinite_steps'),
        jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  finally:
    mngr.close()
  return step, jax.device_get(state)


def _assert_same_run(expected, actual):
  """Bitwise: every metrics line but the timing fields, and the final train state."""
  assert _metrics(expected) == _metrics(actual)
  (step_e, state_e), (step_a, state_a) = _final_state(expected), _final_state(actual)
  assert step_e == step_a
  jax.tree.map(np.testing.assert_array_equal, state_e, state_a)


def _start(args, env, log):
  return start_python(args, env, stdout=subprocess.DEVNULL, stderr=log)


def _wait_for_training(proc, workdir, timeout=240) -> psutil.Process:
  """The trainer process (under `timeout`), once metrics.jsonl shows that training started."""
  metrics = pathlib.Path(workdir) / 'metrics.jsonl'
  deadline = time.time() + timeout
  while not (metrics.exists() and metrics.read_text().strip()):
    assert proc.poll() is None, 'the run ended before training started'
    assert time.time() < deadline, 'training did not start'
    time.sleep(0.05)
  return psutil.Process(proc.pid).children()[0]


def _signalled_run(workdir, env, *signals) -> tuple[int, str]:
  """(exit status, stderr) of the CLI run in `workdir`, sent `signals` 50 ms apart once it
  trains."""
  log_path = pathlib.Path(workdir).parent / f'{pathlib.Path(workdir).name}.stderr'
  with open(log_path, 'w', encoding='utf-8') as log:
    proc = _start(_cli(workdir), env, log)
    try:
      trainer = _wait_for_training(proc, workdir)
      for i, sig in enumerate(signals):
        if i:
          time.sleep(0.05)
        trainer.send_signal(sig)
      status = proc.wait(timeout=120)
    finally:
      _stop(proc)
  return status, log_path.read_text()


def _stop(proc):
  """Kills a run still going (after a failed assertion); SIGKILL does not pass through `timeout`."""
  if proc.poll() is None:
    for child in psutil.Process(proc.pid).children(recursive=True):
      child.kill()
    proc.kill()
  proc.wait(timeout=60)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_exits_130_and_the_rerun_ends_identical(
    tmp_path, reference, cli_env):
  """Ctrl-C behaves as a preemption: the step ends, its checkpoint is saved, the run exits 130
  (it was swallowed by XLA's callbacks, or ended in a traceback with nothing saved)."""
  workdir = tmp_path / 'run'
  status, text = _signalled_run(workdir, cli_env, signal.SIGINT)
  assert status == 130, text[-3000:]
  step = int(re.search(r'interrupted: saved a checkpoint at step (\d+); rerun the same command '
                       'to resume', text)[1])
  assert 0 < step < 200 and step in checkpoint.steps_on_disk(workdir / 'checkpoints')
  assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text[-3000:]
  proc = run_python(_cli(workdir), cli_env)
  assert proc.returncode == 0 and f'resumed from step {step}' in proc.stderr, proc.stderr[-3000:]
  _assert_same_run(reference, workdir)


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_the_rerun_ends_identical(tmp_path, reference,
                                                                   cli_env):
  workdir = tmp_path / 'run'
  status, text = _signalled_run(workdir, cli_env, signal.SIGINT, signal.SIGINT)
  assert status != 0, text[-3000:]
  proc = run_python(_cli(workdir), cli_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _assert_same_run(reference, workdir)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, cli_env):
  """2 processes x 2 CPU devices train exactly like 1 process x 4: same batches, same numbers."""
  tiny_cnn = "{'name': 'cnn', 'features': (4,), 'kernel_sizes': (3,), 'pool': (True,)}"
  common = ['-m', 'mmjax.main', '--config=configs/late_fusion.py:synthetic',
            '--config.num_train_steps=8', '--config.batch_size=16', '--config.log_every_steps=4',
            '--config.evals.validation.every_steps=8', '--config.checkpoint_every_steps=4',
            # Small encoders: compiling for 4 devices is the slow part here.
            f'--config.model.encoders.image={tiny_cnn}',
            f'--config.model.encoders.audio={tiny_cnn}',
            '--config.model.encoders.text.hidden=(8,)', '--config.model.head.hidden=(16,)']
  one, two = tmp_path / 'one', tmp_path / 'two'
  proc = run_python([*common, f'--workdir={one}'],
                    {**cli_env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert proc.returncode == 0, proc.stderr[-3000:]

  port = portpicker.pick_unused_port()
  env = {**cli_env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  logs = [tmp_path / f'process_{i}.log' for i in range(2)]
  procs = []
  try:
    for i, log in enumerate(logs):
      with open(log, 'w', encoding='utf-8') as f:
        procs.append(_start([*common, f'--workdir={two}', f'--coordinator_address=127.0.0.1:{port}',
                             '--num_processes=2', f'--process_id={i}'], env, f))
    codes = [p.wait(timeout=360) for p in procs]
  finally:
    for p in procs:
      _stop(p)
  assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]

  # Only process 0 writes metrics, TensorBoard events and config.json; both save checkpoints.
  assert 'test: loss' in logs[0].read_text() and 'test: loss' not in logs[1].read_text()
  assert len([f for f in os.listdir(two) if f.startswith('events.out.tfevents')]) == 1
  config = lambda w: json.loads((w / 'config.json').read_text())
  assert config(two) == config(one)
  assert checkpoint.steps_on_disk(two / 'checkpoints') == [4, 8]

  # The all-reduce sums in another order across processes: float32 rounding, nothing more.
  expected, actual = _metrics(one), _metrics(two)
  assert [(e['step'], e['split']) for e in expected] == [(a['step'], a['split']) for a in actual]
  for e, a in zip(expected, actual):
    numbers = sorted(k for k in e if k not in ('step', 'split'))
    np.testing.assert_allclose([a[k] for k in numbers], [e[k] for k in numbers], rtol=1e-5,
                               atol=1e-6, err_msg=str(e))
  (_, state_one), (_, state_two) = _final_state(one), _final_state(two)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6), state_one,
               state_two)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_ends_identical(tmp_path, reference, cli_env):
  workdir = tmp_path / 'run'
  status, text = _signalled_run(workdir, cli_env, signal.SIGTERM)
  assert status == 0, text[-3000:]
  step = int(re.search(r'preempted: saved a checkpoint at step (\d+)', text)[1])
  assert 0 < step < 200 and step in checkpoint.steps_on_disk(workdir / 'checkpoints')
  assert not any(e['split'] == 'test' for e in _metrics(workdir))

  proc = run_python(_cli(workdir), cli_env)
  assert proc.returncode == 0 and f'resumed from step {step}' in proc.stderr, proc.stderr[-3000:]
  _assert_same_run(reference, workdir)


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step(tmp_path, cli_env):
  """SIGTERM to process 1 only: JAX's preemption sync stops both processes after the same step,
  both save that step's checkpoint and exit 0, and the same command resumes from it."""
  workdir = tmp_path / 'run'
  env = {**cli_env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  logs = [tmp_path / f'process_{i}.log' for i in range(2)]

  def start_both():
    port = portpicker.pick_unused_port()
    procs = []
    for i, log in enumerate(logs):
      with open(log, 'w', encoding='utf-8') as f:
        procs.append(_start([*_cli(workdir), f'--coordinator_address=127.0.0.1:{port}',
                             '--num_processes=2', f'--process_id={i}'], env, f))
    return procs

  procs = start_both()
  try:
    _wait_for_training(procs[0], workdir)  # process 0 writes the metrics
    psutil.Process(procs[1].pid).children()[0].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=180) for p in procs]
  finally:
    for p in procs:
      _stop(p)
  texts = [log.read_text() for log in logs]
  assert codes == [0, 0], [t[-3000:] for t in texts]
  stopped = [re.findall(rf'preemption notice: process {i} stops after step (\d+)', t)
             for i, t in enumerate(texts)]
  assert len(stopped[0]) == 1 and stopped[0] == stopped[1], stopped
  step = int(stopped[0][0])
  assert f'preempted: saved a checkpoint at step {step}' in texts[0]
  assert 0 < step < 200 and checkpoint.steps_on_disk(workdir / 'checkpoints')[-1] == step
  assert not [m for m in _metrics(workdir) if m['step'] > step]

  procs = start_both()
  try:
    codes = [p.wait(timeout=300) for p in procs]
  finally:
    for p in procs:
      _stop(p)
  texts = [log.read_text() for log in logs]
  assert codes == [0, 0], [t[-3000:] for t in texts]
  assert f'resumed from step {step}' in texts[0]
  assert checkpoint.steps_on_disk(workdir / 'checkpoints')[-1] == 200


@pytest.mark.slow
def test_kill9_at_a_random_moment_resumes_to_identical_result(tmp_path, reference, cli_env):
  workdir = tmp_path / 'run'
  ckpt_dir = workdir / 'checkpoints'
  delay = random.Random(7).uniform(0.0, 1.0)
  proc = _start(_cli(workdir), cli_env, subprocess.DEVNULL)
  try:
    trainer = _wait_for_training(proc, workdir)
    time.sleep(delay)
    trainer.kill()
    # `timeout` passes the child's death by a signal on as its own.
    assert proc.wait(timeout=60) in (-signal.SIGKILL, 128 + signal.SIGKILL), 'ended before the kill'
  finally:
    _stop(proc)
  steps = checkpoint.steps_on_disk(ckpt_dir)
  # Whatever the kill left, also leave what a kill during a save does: a half-written temporary
  # directory of the next step.
  last = steps[-1] if steps else 0
  half = ckpt_dir / f'{last + 8}.orbax-checkpoint-tmp'
  if steps and not half.exists():
    shutil.copytree(ckpt_dir / str(last), half)
    biggest = max((p for p in half.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:biggest.stat().st_size // 2])

  proc = run_python(_cli(workdir), cli_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  if steps:
    assert f'resumed from step {last}' in proc.stderr
  assert not list(ckpt_dir.glob('*.orbax-checkpoint-tmp'))
  _assert_same_run(reference, workdir)


def _copy(reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  return workdir


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, cli_env):
  workdir = _copy(reference, tmp_path)
  assert checkpoint.steps_on_disk(workdir / 'checkpoints') == [184, 192, 200]
  biggest = max((p for p in (workdir / 'checkpoints' / '200').rglob('*') if p.is_file()),
                key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[:biggest.stat().st_size // 2])
  proc = run_python(_cli(workdir), cli_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r'checkpoint at step 200 in \S+ does not restore', proc.stderr)
  assert 'resumed from step 192' in proc.stderr
  _assert_same_run(reference, workdir)


def _all_finite(tree) -> bool:
  return all(np.isfinite(x).all() for x in jax.tree.leaves(tree))


# Resumed with an image std of 0, every input is infinite: steps 201-208 are all non-finite.
NONFINITE = ['--config.num_train_steps=208', '--config.dataset.modalities.image.std=0.0',
             '--accept_config_changes']


def test_nonfinite_stop_is_one_line_naming_the_step_and_last_good_checkpoint(
    tmp_path, reference, cli_env):
  workdir = _copy(reference, tmp_path)
  proc = run_python(_cli(workdir, *NONFINITE), cli_env)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      'mmjax: error: non-finite loss, gradient or parameters at step 201 (that update was not '
      f'applied); last good checkpoint: step 200 in {workdir / "checkpoints"}; lower '
      'optimizer.learning_rate or check the inputs, or set on_nonfinite=skip to skip such steps')
  assert checkpoint.steps_on_disk(workdir / 'checkpoints') == [184, 192, 200]
  assert _all_finite(_final_state(workdir)[1])
  # Recorded for a sweep, which counts the run as diverged rather than unfinished.
  last = runs_lib.read_metrics(workdir)[-1]
  assert last == {'step': 201, 'split': 'train', 'stopped_nonfinite': True}
  run = runs_lib.Run(TINY, {'dataset.modalities.image.std': 0.0}, 0, {
      'num_train_steps': 208, 'log_every_steps': 4, 'evals.validation.every_steps': 100,
      'checkpoint_every_steps': 8})  # the command's values
  assert runs_lib.progress(run, workdir).state == 'diverged'


@pytest.mark.slow
def test_nonfinite_skip_completes_and_counts(tmp_path, reference, cli_env):
  workdir = _copy(reference, tmp_path)
  proc = run_python(_cli(workdir, *NONFINITE, '--config.on_nonfinite=skip'), cli_env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'skipped 8 of 208 updates' in proc.stderr
  last_train = [m for m in _metrics(workdir) if m['split'] == 'train'][-1]
  assert last_train['step'] == 208 and last_train['nonfinite_steps'] == 8
  assert math.isnan(last_train['loss'])  # every step of that interval was skipped
  step, state = _final_state(workdir)
  assert step == 208 and int(state['nonfinite_steps']) == 8 and _all_finite(state)
  jax.tree.map(np.testing.assert_array_equal, _final_state(reference)[1]['params'],
               state['params'])


@pytest.mark.slow
def test_host_memory_stays_flat(tmp_path, cli_env):
  spec = importlib.util.spec_from_file_location('bench_memory',
                                                REPO / 'experiments' / 'bench_memory.py')
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  result = bench.measure(400, tmp_path / 'run', env_extra=cli_env)
  mib = lambda b: f'{b / 2**20:.1f} MiB'
  assert len(result['samples']) > 10
  assert result['growth'] < 0.05, (mib(result['warm']), mib(result['end']))


def test_checkpoints_and_datasets_hold_no_pickles(reference, tfds_data_dir):
  pickle_headers = (b'\x80\x02', b'\x80\x03', b'\x80\x04', b'\x80\x05')
  files = [p for root in (reference / 'checkpoints', pathlib.Path(tfds_data_dir) / 'synthetic')
           for p in root.rglob('*') if p.is_file()]
  assert len(files) > 10
  def head(p):
    with open(p, 'rb') as f:
      return f.read(2)
  assert [p for p in files if head(p) in pickle_headers or p.suffix in ('.pkl', '.pickle')] == []


# ------------------------------------------------------------------------------------------------
# The two training features the bad-input checks guard.


def test_modality_dropout_draws_per_example_and_never_drops_all():
  config = tiny_config(modality_dropout={'image': 0.5, 'audio': 0.5})
  modalities = ('audio', 'image')
  drop = jax.jit(lambda present, seed: corrupt.drop_modalities(config, modalities, present,
                                                                 jax.random.key(seed)))
  everything = {'image': jnp.ones(4000, bool), 'audio': jnp.ones(4000, bool)}
  out = jax.device_get(drop(everything, 3))
  assert (out['image'] | out['audio']).all()
  # Absent when dropped while the other is kept: p = 0.5 * 0.5.
  assert abs((~out['image']).mean() - 0.25) < 0.03 and abs((~out['audio']).mean() - 0.25) < 0.03
  jax.tree.map(np.testing.assert_array_equal, out, jax.device_get(drop(everything, 3)))
  assert (jax.device_get(drop(everything, 4))['image'] != out['image']).any()
  # An example that has only audio keeps it.
  only_audio = {'image': jnp.zeros(4000, bool), 'audio': jnp.ones(4000, bool)}
  assert jax.device_get(drop(only_audio, 3))['audio'].all()

  config = tiny_config(modality_dropout={'image': 1.0})
  out = jax.device_get(corrupt.drop_modalities(config, modalities, everything,
                                               jax.random.key(0)))
  assert not out['image'].any() and out['audio'].all()


def test_init_from_copies_every_matching_array(reference, caplog):
  from mmjax import parallel
  from mmjax.training import transfer  # pylint: disable=import-outside-toplevel
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  config = tiny_config(seed=1, init_from=str(reference))
  mesh = parallel.make_mesh()
  trainer = steps.build_trainer(config, mesh)
  state = trainer.init_state(next(input_pipeline.train_iterator(config)))
  with caplog.at_level('INFO'):
    state = transfer.init_from_checkpoint(config, state, mesh)
  count = len(jax.tree.leaves(state.params))
  assert f'init_from: copied {count} of {count} arrays from {reference} step 200' in caplog.text
  assert int(state.step) == 0
  jax.tree.map(np.testing.assert_array_equal, _final_state(reference)[1]['params'],
               jax.device_get(state.params))


# ------------------------------------------------------------------------------------------------
# One run per workdir


def test_a_second_run_on_a_workdir_in_use_stops_at_once_naming_the_holder(tmp_path, cli_env):
  """Two runs on one workdir used to end with a raw Orbax traceback and duplicate metrics lines."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with workdirs.exclusive(str(workdir)):
    proc = run_python(_cli(workdir), cli_env)
    holder = (workdir / workdirs.LOCK_FILE).read_text().strip()
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert holder.startswith(f'the run of pid {os.getpid()} on {socket.gethostname()}, started ')
  assert proc.stderr.strip().splitlines()[-1] == (
      f'mmjax: error: workdir {workdir} is in use by {holder}; wait for that run to end, or use '
      'another --workdir')
  assert os.listdir(workdir) == [workdirs.LOCK_FILE]  # the second run wrote nothing
  assert (workdir / workdirs.LOCK_FILE).read_text() == ''  # released: no holder to name


def test_a_lock_left_by_a_crashed_run_is_taken_over_with_a_warning(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / workdirs.LOCK_FILE).write_text('the run of pid 999999 on elsewhere, started then\n')
  with mock.patch.object(workdirs.logging, 'warning') as warning:
    train.train_and_evaluate(tiny_config(num_train_steps=2, checkpoint_every_steps=2,
                                         log_every_steps=1), str(workdir))
  assert warning.call_args_list[0].args[1:] == (
      str(workdir), 'the run of pid 999999 on elsewhere, started then')
  assert (workdir / workdirs.LOCK_FILE).read_text() == ''


# ------------------------------------------------------------------------------------------------
# A full disk


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_the_rerun_resumes(small_disk, cli_env):
  """On a full disk a run used to print ~70 tracebacks, train on for another interval and exit
  without an `mmjax: error:` line. The synthetic model's checkpoint (~6 MiB on disk, 8.1 MiB
  asked for) fits once in 12 MiB, not twice."""
  mount, grow = small_disk
  disk = mount('12m')
  workdir = disk / 'run'
  command = ['-m', 'mmjax.main', '--config=configs/late_fusion.py:synthetic',
             f'--workdir={workdir}', '--config.num_train_steps=20',
             '--config.checkpoint_every_steps=10', '--config.log_every_steps=5']
  proc = run_python(command, cli_env)
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert re.fullmatch(
      rf'mmjax: error: cannot save the checkpoint of step 20 in {re.escape(str(workdir))}/'
      r'checkpoints: [\d.]+ MiB free, it needs [\d.]+ MiB; the checkpoints saved before it are '
      r'intact \(steps 10\): free space and rerun the same command to resume', last), last
  before = _metrics(workdir)
  assert [(m['step'], m['split']) for m in before] == [(5, 'train'), (10, 'train'), (15, 'train'),
                                                     (20, 'train')]
  grow(disk, '64m')
  proc = run_python(command, cli_env)
  assert proc.returncode == 0 and 'resumed from step 10' in proc.stderr, proc.stderr[-3000:]
  after = _metrics(workdir)
  assert after[:2] == before[:2]  # nothing saved before the failure is lost
  assert {(m['step'], m['split']) for m in after} >= {(20, 'validation'), (20, 'test')}
