"""Workdirs as users give them: relative, under ~, or on gs:// (mapped here to a local folder).

The gs:// tests run mmjax's own path handling (workdir checks, config.json, metrics.jsonl and its
line dropping on resume, TensorBoard event files) against `gs://bucket/...` with
`etils.epath.testing.mock_epath` mapping every epath call on gs:// to a local folder, and
tensorboardX's gs:// writer mapped the same way. Code that used `os.path`, `open()` or `os.makedirs`
on such a path would create a local `gs:` folder in the working directory instead, which the tests
check is never there.

What they cannot cover: Orbax writes checkpoint arrays through TensorStore's own GCS driver and
asks GCS itself (google-cloud-storage) about the bucket when it lists and commits steps, so the
end-to-end test below hands Orbax the local folder the bucket is mapped to; a TFDS data_dir on
gs:// is read by TFDS and grain. Their gs:// support is the libraries' own and needs a real bucket
and credentials to test.
"""

import contextlib
import importlib.util
import json
import logging
import os
import pathlib
import struct
import sys
from unittest import mock

import ml_collections
import pytest
from etils import epath
from etils.epath import testing as epath_testing
from tensorboardX import record_writer
from tensorboardX.proto import event_pb2

from mmjax import checkpoint
from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.errors import UserError
from tests.conftest import tiny_config

BUCKET = 'gs://bucket'


@contextlib.contextmanager
def gcs_on_disk(root: pathlib.Path):
  """Every epath call on gs://X and tensorboardX's gs:// writer go to root/X instead."""
  root.mkdir(parents=True, exist_ok=True)

  def local(path):
    text = os.fspath(path)
    return str(root / text[len('gs://'):]) if text.startswith('gs://') else text

  def remote(path):
    text = os.fspath(path)
    inside = text.startswith(str(root) + os.sep)
    return 'gs://' + os.path.relpath(text, root) if inside else text

  def back(asked, path):  # a result under root, named as it was asked for
    return remote(path) if os.fspath(asked).startswith('gs://') else path

  one = lambda fn, path, *args, **kwargs: fn(local(path), *args, **kwargs)
  two = lambda fn, src, dst, *args, **kwargs: fn(local(src), local(dst), *args, **kwargs)
  glob = lambda fn, pattern: [back(pattern, p) for p in fn(local(pattern))]

  def walk(fn, top, **kwargs):
    for folder, dirs, files in fn(local(top), **kwargs):
      yield back(top, folder), dirs, files

  class LocalFactory:

    def open(self, path):
      os.makedirs(os.path.dirname(local(path)), exist_ok=True)
      return open(local(path), 'wb')  # pylint: disable=consider-using-with

    def directory_check(self, path):
      os.makedirs(local(path), exist_ok=True)

  saved = record_writer.REGISTERED_FACTORIES.get('gs')
  record_writer.REGISTERED_FACTORIES['gs'] = LocalFactory()
  try:
    with epath_testing.mock_epath(
        exists=one, isdir=one, listdir=one, makedirs=one, mkdir=one, open=one, remove=one,
        rmtree=one, stat=one, rename=two, replace=two, copy=two, glob=glob, walk=walk):
      yield
  finally:
    record_writer.REGISTERED_FACTORIES['gs'] = saved


@pytest.fixture
def gcs(tmp_path, monkeypatch):
  """(bucket folder on disk); the test runs in an empty working directory."""
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  with gcs_on_disk(tmp_path / 'gcs'):
    yield tmp_path / 'gcs' / 'bucket'
  assert os.listdir(cwd) == [], 'a gs:// path was used as a local path'


# ------------------------------------------------------------------------------------------------
# Resolving what the user typed


def test_resolve_local_paths_once_and_leave_urls(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert workdirs.resolve('runs/a') == epath.Path(tmp_path / 'runs' / 'a')
  assert workdirs.resolve('../x') == epath.Path(tmp_path.parent / 'x')
  assert workdirs.resolve('~/r') == epath.Path(tmp_path / 'home' / 'r')
  assert str(workdirs.resolve('gs://b/run')) == 'gs://b/run'
  assert str(workdirs.checkpoint_dir('gs://b/run')) == 'gs://b/run/checkpoints'
  assert workdirs.checkpoint_dir('runs/a') == epath.Path(tmp_path / 'runs' / 'a' / 'checkpoints')
  with pytest.raises(UserError, match=r'ftp://h/run: unsupported scheme ftp://; use a local path'):
    workdirs.resolve('ftp://h/run')


def test_gcs_workdir_without_the_extra_is_one_line():
  if importlib.util.find_spec('gcsfs') is not None:
    pytest.skip('gcsfs is installed: the check would reach a real bucket')
  with pytest.raises(UserError) as e:
    workdirs.check('gs://bucket/run')
  assert str(e.value).startswith('workdir gs://bucket/run: gs:// needs a package that is not '
                                 'installed (')
  assert str(e.value).endswith("); install the gcs extra: pip install -e '.[gcs]'")
  assert '\n' not in str(e.value)


def test_relative_workdir_is_the_same_folder_after_a_chdir(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  path = workdirs.checkpoint_dir('run')
  monkeypatch.chdir('/')
  assert path == epath.Path(tmp_path / 'run' / 'checkpoints')


# ------------------------------------------------------------------------------------------------
# gs:// workdirs, mapped to a local folder


def _config(**model):
  config = ml_collections.ConfigDict({'model': {'hidden': 16, **model}, 'tasks': {'label': 10},
                                      'seed': 0})
  return config


def test_workdir_checks_and_config_on_gcs(gcs):
  workdir = f'{BUCKET}/runs/a'
  workdirs.check(workdir)
  workdirs.make(workdir)
  assert (gcs / 'runs' / 'a').is_dir() and os.listdir(gcs / 'runs' / 'a') == []
  versions = {'synthetic/redundant': '3.0.0'}
  workdirs.write_config(workdir, _config(), versions)
  saved = json.loads((gcs / 'runs' / 'a' / 'config.json').read_text())
  assert saved['model'] == {'hidden': 16}
  assert json.loads((gcs / 'runs' / 'a' / 'datasets.json').read_text()) == versions
  workdirs.check_resume_config(workdir, _config(), versions)
  with pytest.raises(UserError, match=f'{workdir} holds a run with a different model config'):
    workdirs.check_resume_config(workdir, _config(hidden=32), versions)
  with pytest.raises(UserError, match=f'{workdir} holds a run trained on synthetic/redundant '
                                      '3.0.0, which is now 4.0.0'):
    workdirs.check_resume_config(workdir, _config(), {'synthetic/redundant': '4.0.0'})

  (gcs / 'file').write_text('an object, not a prefix')
  with pytest.raises(UserError, match=f'workdir {BUCKET}/file is a file, not a directory'):
    workdirs.check(f'{BUCKET}/file')
  with pytest.raises(UserError, match=f'workdir {BUCKET}/file/run cannot be created: '
                                      f'{BUCKET}/file is a file'):
    workdirs.check(f'{BUCKET}/file/run')
  workdirs.check(f'{BUCKET}/new/deeper/run')  # a prefix nothing is under yet


def _write_run(workdir, resume_step=0, rerun=(), steps=(4, 8), evals_at=8):
  """Train lines at `steps`, then the evaluators' lines at `evals_at` (None: none), as a run
  resumed at `resume_step` that reruns `rerun` writes them."""
  writer = writers.MetricWriter(workdir, resume_step=resume_step, rerun_splits=rerun)
  try:
    for step in steps:
      writer.write(step, 'train', {'loss': 1.0 / step, 'accuracy': 0.5})
    if evals_at is not None:
      writer.write(evals_at, 'test', {'loss': 0.25, 'accuracy': 0.75, 'num_examples': 10})
      for condition in ('all', 'missing=audio'):
        writer.write(evals_at, 'robustness', {'condition': condition, 'accuracy': 0.5})
  finally:
    writer.close()


def _lines(path):
  return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines()]


def _resume_sequence(workdir, metrics_path):
  """A run to step 8 killed mid-line, a resume from step 4 to 12, an eval-only rerun at 12."""
  workdirs.make(workdir)
  _write_run(workdir, steps=(4, 8), evals_at=8)
  with open(metrics_path, 'a', encoding='utf-8') as f:
    f.write('{"step": 8, "split": "tra')  # killed mid-line
  _write_run(workdir, resume_step=4, steps=(8, 12), evals_at=12)
  _write_run(workdir, resume_step=12, rerun=('test', 'robustness'), steps=(), evals_at=12)


def test_metrics_resume_on_gcs_matches_local(gcs, tmp_path):
  local = tmp_path / 'local'
  _resume_sequence(str(local), local / 'metrics.jsonl')
  _resume_sequence(f'{BUCKET}/run', gcs / 'run' / 'metrics.jsonl')
  expected = _lines(local / 'metrics.jsonl')
  assert _lines(gcs / 'run' / 'metrics.jsonl') == expected
  assert [(l['step'], l['split'], l.get('condition')) for l in expected] == [
      (4, 'train', None), (8, 'train', None), (12, 'train', None), (12, 'test', None),
      (12, 'robustness', 'all'), (12, 'robustness', 'missing=audio')]
  assert len(list((gcs / 'run').glob('events.out.tfevents.*'))) == 3


def test_metric_writer_drops_what_a_resume_writes_again(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  _write_run(str(workdir), steps=(4, 8), evals_at=8)
  assert [(l['step'], l['split']) for l in _lines(workdir / 'metrics.jsonl')] == [
      (4, 'train'), (8, 'train'), (8, 'test'), (8, 'robustness'), (8, 'robustness')]
  # An eval-only rerun at the final step replaces the evaluators' lines, not the train line.
  writers.MetricWriter(str(workdir), resume_step=8, rerun_splits=('test', 'robustness')).close()
  assert [(l['step'], l['split']) for l in _lines(workdir / 'metrics.jsonl')] == [
      (4, 'train'), (8, 'train')]
  # Lines that are not metrics lines (a damaged file, a note, a line cut short) are moved to
  # metrics.jsonl.unparsed, with a warning: nothing goes unsaid.
  with open(workdir / 'metrics.jsonl', 'a', encoding='utf-8') as f:
    f.write('[1, 2]\n{"split": "train"}\nmy note: lr looked high\n{"step": 8, "spl')
  with mock.patch.object(writers.logging, 'warning') as warning:
    # A resume from step 4 drops everything after it; 'test' is not special.
    writers.MetricWriter(str(workdir), resume_step=4).close()
  assert [(l['step'], l['split']) for l in _lines(workdir / 'metrics.jsonl')] == [(4, 'train')]
  assert (workdir / 'metrics.jsonl.unparsed').read_text() == (
      '[1, 2]\n{"split": "train"}\nmy note: lr looked high\n{"step": 8, "spl\n')
  [(args, _)] = warning.call_args_list
  assert args[2] == 4 and 'not metrics lines' in args[0]


def test_tensorboard_tags():
  assert writers.tensorboard_tag('train', 'loss') == 'train/loss'
  assert writers.tensorboard_tag('robustness', 'label/accuracy', 'noise=audio,snr_db=-6') == \
      'robustness/noise_audio_snr_db_-6/label/accuracy'
  assert writers.tensorboard_tag('robustness', 'loss', 'noise=image,std=0.5') == \
      'robustness/noise_image_std_0.5/loss'


def _events(workdir):
  """[(file, [Event])] of every TensorBoard event file in `workdir`, oldest first."""
  out = []
  for path in sorted(pathlib.Path(workdir).glob('events.out.tfevents.*'),
                     key=lambda p: p.stat().st_mtime_ns):
    data, events, i = path.read_bytes(), [], 0
    while i < len(data):
      (length,) = struct.unpack('<Q', data[i:i + 8])
      events.append(event_pb2.Event.FromString(data[i + 12:i + 12 + length]))
      i += 12 + length + 4
    out.append((path.name, events))
  return out


def test_tensorboard_numeric_fields_condition_tags_and_purge_on_resume(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  _write_run(str(workdir), steps=(4, 8))
  (_, first), = _events(workdir)
  scalars = {(v.tag, e.step) for e in first for v in e.summary.value}
  assert ('robustness/missing_audio/accuracy', 8) in scalars
  assert ('robustness/all/accuracy', 8) in scalars
  assert ('train/loss', 4) in scalars and ('test/accuracy', 8) in scalars
  assert not [t for t, _ in scalars if t.endswith('/num_examples')]  # a count, not a curve
  assert not [t for t, _ in scalars if t.endswith('/condition')]  # strings stay in the jsonl
  assert json.loads((workdir / 'metrics.jsonl').read_text().splitlines()[-1])['condition'] == \
      'missing=audio'

  writers.MetricWriter(str(workdir), resume_step=4).close()
  (_, _), (_, second) = _events(workdir)
  # TensorBoard drops the earlier files' points from the purge step on: a session START at 5.
  starts = [e for e in second if e.HasField('session_log')]
  assert [(e.step, e.session_log.status) for e in starts] == [(5, event_pb2.SessionLog.START)]


def test_missing_tensorboard_extra_on_gcs_warns_and_keeps_metrics(gcs, monkeypatch, caplog):
  def no_gcs(path):
    raise ImportError("`google-cloud-storage` must be installed in order to use the 'gs://' "
                      'protocol')
  monkeypatch.setattr(record_writer.REGISTERED_FACTORIES['gs'], 'open', no_gcs)
  with caplog.at_level('WARNING'):
    workdirs.make(f'{BUCKET}/run')
    _write_run(f'{BUCKET}/run', steps=(4,), evals_at=None)
  assert "install the gcs extra: pip install -e '.[gcs]'" in caplog.text
  assert [l['step'] for l in _lines(gcs / 'run' / 'metrics.jsonl')] == [4]


# ------------------------------------------------------------------------------------------------
# The trainer on a gs:// workdir


def _metrics(path):
  return [{k: v for k, v in l.items() if k not in writers.TIMING_KEYS}
          for l in _lines(path)]


@pytest.mark.slow
def test_training_on_gcs_writes_and_resumes_like_a_local_run(gcs, tmp_path, monkeypatch):
  """4 steps, then the same workdir resumed to 8, on gs://bucket/run and on a local folder: the
  same metrics.jsonl, config.json and checkpoint steps. Orbax is handed the folder the bucket maps
  to (TensorStore's GCS driver is outside what the mock reaches)."""
  from mmjax.training import train  # pylint: disable=import-outside-toplevel
  on_disk = lambda d: str(d).replace('gs://', str(gcs.parent) + '/') if 'gs://' in str(d) else d
  original = checkpoint.manager
  monkeypatch.setattr(checkpoint, 'manager',
                      lambda d, *args, **kwargs: original(on_disk(d), *args, **kwargs))
  local, remote = str(tmp_path / 'local'), f'{BUCKET}/run'
  for workdir in (local, remote):
    train.train_and_evaluate(tiny_config(num_train_steps=4), workdir)
    assert checkpoint.steps_on_disk(f'{on_disk(workdir)}/checkpoints') == [4]
    train.train_and_evaluate(tiny_config(num_train_steps=8), workdir)
    assert checkpoint.steps_on_disk(f'{on_disk(workdir)}/checkpoints') == [4, 8]

  assert _metrics(gcs / 'run' / 'metrics.jsonl') == _metrics(tmp_path / 'local' / 'metrics.jsonl')
  assert [l['step'] for l in _lines(gcs / 'run' / 'metrics.jsonl')
          if l['split'] == 'train'] == [4, 8]
  assert (gcs / 'run' / 'config.json').read_text() == \
      (tmp_path / 'local' / 'config.json').read_text()
  assert len(list((gcs / 'run').glob('events.out.tfevents.*'))) == 2


def test_duration_counts_days_past_a_day():
  """The ETA used to wrap after 24 h: 30 h showed 06:00:00."""
  assert writers.duration(59.6) == '00:01:00'
  assert writers.duration(5 * 3600 + 4 * 60 + 3) == '05:04:03'
  assert writers.duration(30 * 3600) == '1d 06:00:00'
  assert writers.duration(2 * 86400 + 1) == '2d 00:00:01'


def test_console_filter_drops_notices_that_do_not_apply_and_orbax_tracebacks():
  quiet = writers.QuietLibraries()

  def record(path, msg, level=logging.INFO, exc_info=None):
    return logging.LogRecord('absl', level, path, 1, msg, (), exc_info)

  assert not quiet.filter(record('/x/tensorflow_datasets/core/features/image_feature.py',
                                 'OpenCV is not installed. We recommend ...', logging.WARNING))
  assert not quiet.filter(record('/x/jax/_src/xla_bridge.py',
                                 "Unable to initialize backend 'tpu': INTERNAL: ..."))
  assert quiet.filter(record('/x/jax/_src/xla_bridge.py', 'An NVIDIA GPU may be present'))
  assert not quiet.filter(record('/x/orbax/checkpoint/checkpoint_manager.py', 'saving step 4'))
  try:
    raise ValueError('RESOURCE_EXHAUSTED')
  except ValueError:
    failed = record('/x/orbax/checkpoint/future.py', 'raised an exception', logging.ERROR,
                    sys.exc_info())
  assert quiet.filter(failed) and failed.exc_info is None


def test_tensorboard_gets_the_config_as_text_and_its_fields_as_hparams(tmp_path):
  config = {'seed': 3, 'optimizer': {'name': 'sgd', 'learning_rate': 0.1},
            'model': {'head': {'hidden': [100]}}, 'modality_dropout': {}}
  writer = writers.MetricWriter(str(tmp_path))
  writer.write_config(config, evaluators=('validation', 'test'))
  writer.close()
  assert writers.flat_fields(config) == {'seed': 3, 'optimizer.name': 'sgd',
                                         'optimizer.learning_rate': 0.1,
                                         'model.head.hidden': '[100]', 'modality_dropout': '{}'}
  [(_, events)] = _events(tmp_path)
  values = [v for e in events for v in e.summary.value]
  [text] = [v for v in values if v.tag.startswith('config')]
  assert '"learning_rate": 0.1' in text.tensor.string_val[0].decode()
  plugins = {v.metadata.plugin_data.plugin_name for v in values if v.metadata.plugin_data.plugin_name}
  assert 'hparams' in plugins
  experiment = [v for v in values if v.tag == '_hparams_/experiment'][0]
  content = experiment.metadata.plugin_data.content
  for field in (b'optimizer.learning_rate', b'model.head.hidden', b'validation/accuracy',
                b'test/accuracy'):
    assert field in content, content[:500]
