"""Bad input gets one line that names the fix, and leaves an existing workdir exactly as it was.

The command line is checked where its own parsing is involved (flags, config files, device counts,
raw data); the rest calls `train.train_and_evaluate`, whose UserError `mmjax.main` prints as
`mmjax: error: <message>`.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import pytest

from configs import default
from mmjax.training import train
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from tests.conftest import (RAW_DATA_DIR, REPO, full_suite_only, run_python, small_config,
                            tiny_config, tree_digest)

TINY = 'tests/scripts/tiny_config.py'


@pytest.fixture(scope='module')
def existing(tmp_path_factory):
  """A finished run: checkpoints, metrics.jsonl, config.json, TensorBoard events."""
  workdir = tmp_path_factory.mktemp('existing') / 'run'
  train.train_and_evaluate(tiny_config(num_train_steps=4), str(workdir))
  assert (workdir / 'checkpoints' / '4').is_dir() and (workdir / 'metrics.jsonl').exists()
  return workdir


def _rejects(config, workdir, message, untouched=()):
  """train_and_evaluate raises a one-line UserError containing `message`, and changes neither
  `workdir` nor any of `untouched`."""
  watched = [pathlib.Path(workdir), *map(pathlib.Path, untouched)]
  before = [tree_digest(p) if p.exists() else None for p in watched]
  with pytest.raises(UserError) as e:
    train.train_and_evaluate(config, str(workdir))
  text = str(e.value)
  assert message in text and '\n' not in text, text
  assert [tree_digest(p) if p.exists() else None for p in watched] == before
  return text


# ------------------------------------------------------------------------------------------------
# The command line: each case exits 1 with one `mmjax: error:` line as the last line of stderr.


def _cli_error(args, env_extra=None, workdir=None):
  before = tree_digest(workdir) if workdir else None
  proc = run_python(['-m', 'mmjax.main', *args], {'JAX_PLATFORMS': 'cpu', **(env_extra or {})},
                    timeout=180)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 1 and lines and lines[-1].startswith('mmjax: error: '), \
      proc.stderr[-3000:]
  if workdir:
    assert tree_digest(workdir) == before
  return lines[-1][len('mmjax: error: '):]


@pytest.mark.parametrize('args, message', [
    (['--config.nope=1'],
     '--config.nope: no such config field; fields there: batch_size, '),
    full_suite_only(['--config.batch_siz=32'],
                    '--config.batch_siz: no such config field; did you mean batch_size?',
                    id='misspelt_key'),
    (['--config.eval_every_steps=100'],
     '--config.eval_every_steps: no such config field; it was replaced by '
     '--config.evals.validation.every_steps'),
    (['--config.batch_size=abc'],
     "flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'; "
     '--config.batch_size takes a value of type int, e.g. 16'),
    full_suite_only(['--config.model.encoders.audio.features=abc'],
                    "--config.model.encoders.audio.features=('abc',): expected a tuple of int "
                    'like (4,)', id='wrong_tuple_type'),
    full_suite_only(['--num_processes=2'],
                    '--num_processes and --process_id need --coordinator_address',
                    id='num_processes_alone'),
    # A field inside a dict the config leaves empty: it used to list "fields there: " and nothing.
    full_suite_only(['--config.modality_dropout.image=0.3'],
                    '--config.modality_dropout.image: no such config field; '
                    'config.modality_dropout is empty in this config: set it whole, e.g. '
                    """'--config.modality_dropout={"image": VALUE}'""", id='field_of_an_empty_dict'),
], ids=['unknown_key', 'misspelt_key', 'renamed_key', 'wrong_type', 'wrong_tuple_type',
        'num_processes_alone', 'field_of_an_empty_dict'])
def test_cli_bad_flags(existing, args, message):
  error = _cli_error([f'--config={TINY}', f'--workdir={existing}', *args], workdir=existing)
  assert error.startswith(message), error


def test_cli_missing_config_file_and_workdir_flag(existing):
  error = _cli_error(['--config=configs/nope.py', f'--workdir={existing}'], workdir=existing)
  assert error.startswith("--config=configs/nope.py: cannot load it ([Errno 2] No such file or "
                          "directory: 'configs/nope.py'); check the path"), error
  error = _cli_error([f'--config={TINY}'])
  assert error == ('flag --workdir=None: Flag --workdir must have a value other than None; give '
                   '--workdir=<value>'), error


def test_cli_help_lists_the_configs_their_variants_and_the_override_syntax(tmp_path):
  """--help used to show six flags and `--config (default: 'None')` only."""
  proc = subprocess.run([sys.executable, '-m', 'mmjax.main', '--help'], cwd=tmp_path,
                        capture_output=True, text=True, timeout=180,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  shipped = sorted(p.name for p in (REPO / 'configs').glob('*.py')
                   if p.stem not in ('__init__', 'default'))
  listed = re.findall(r'^  (\w+\.py) ', proc.stdout, re.M)
  assert listed == shipped, proc.stdout[:3000]  # (absl ends --help with status 1)
  assert re.search(
      r'late_fusion\.py .*\n +variants: avmnist, synthetic, modality_dropout, multibench\n',
      proc.stdout), proc.stdout[:3000]
  assert 'variants: avmnist, siglip, synthetic, synthetic_siglip' in proc.stdout
  assert 'Override any field with --config.FIELD=VALUE' in proc.stdout


def test_cli_config_takes_key_value_items_after_the_file(existing):
  """`FILE.py:VARIANT,a=1,b.c=2` as big_vision writes it: the items are overrides (a bad value
  shows they reached the config)."""
  error = _cli_error([f'--config={TINY}:seed=2,num_train_steps=-1', f'--workdir={existing}'],
                     workdir=existing)
  assert error == 'num_train_steps=-1 must be >= 0 (0 only evaluates)', error
  error = _cli_error(['--config=configs/late_fusion.py:synthetic,avmnist,seed=1',
                      f'--workdir={existing}'], workdir=existing)
  assert error == ('--config=configs/late_fusion.py:synthetic,avmnist,seed=1: one variant at '
                   'most before the key=value items, got synthetic, avmnist'), error


def test_cli_missing_config_file_with_an_override(existing):
  """An override makes absl load the file while parsing flags; that failure is one line too."""
  error = _cli_error(['--config=configs/nope.py', f'--workdir={existing}', '--config.seed=1'],
                     workdir=existing)
  assert error.startswith("--config=configs/nope.py: cannot load it ([Errno 2] No such file or "
                          "directory: 'configs/nope.py'); check the path"), error


def test_cli_config_given_by_path_from_another_directory(tmp_path):
  """A config imports `configs.default`: it loads from any working directory (a value check
  fails afterwards, so nothing trains)."""
  proc = subprocess.run(
      [sys.executable, '-m', 'mmjax.main', f'--config={REPO / "configs" / "late_fusion.py"}',
       f'--workdir={tmp_path / "run"}', '--config.num_train_steps=-1'],
      cwd=tmp_path, capture_output=True, text=True, timeout=180,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ''})
  assert proc.stderr.strip().splitlines()[-1] == (
      'mmjax: error: num_train_steps=-1 must be >= 0 (0 only evaluates)'), proc.stderr[-2000:]


def test_cli_batch_not_divisible_by_devices(existing):
  error = _cli_error([f'--config={TINY}', f'--workdir={existing}', '--config.batch_size=10'],
                     {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}, workdir=existing)
  assert error == ('batch_size=10 must be a positive multiple of the device count 4 '
                   '(1 process(es) x 4 local devices); change --config.batch_size'), error


def test_cli_missing_raw_data_dir(existing, tmp_path):
  error = _cli_error(['--config=configs/late_fusion.py', f'--workdir={existing}'],
                     {'MMJAX_RAW_DATA_DIR': str(tmp_path / 'nowhere'), 'MMJAX_RAW_DOWNLOAD': '0',
                      'TFDS_DATA_DIR': str(tmp_path / 'tfds')}, workdir=existing)
  assert error.startswith(f'{tmp_path / "nowhere"}: raw data dir (from MMJAX_RAW_DATA_DIR) does '
                          'not exist; create it'), error


def test_cli_wrong_checksum(existing, tmp_path):
  raw = tmp_path / 'raw'
  (raw / 'mnist').mkdir(parents=True)
  (raw / 'mnist' / 'train-images-idx3-ubyte.gz').write_bytes(b'not the MNIST file')
  error = _cli_error(['--config=configs/late_fusion.py', f'--workdir={existing}'],
                     {'MMJAX_RAW_DATA_DIR': str(raw), 'MMJAX_RAW_DOWNLOAD': '0',
                      'TFDS_DATA_DIR': str(tmp_path / 'tfds')}, workdir=existing)
  assert 'train-images-idx3-ubyte.gz: md5 ' in error and error.endswith(
      '!= expected f68b3c2dcbeaaa9fbdd348bbdeb94873 (truncated: 18 of 9912422 bytes); re-download '
      'it or point MMJAX_RAW_DATA_DIR at a good copy'), error


# ------------------------------------------------------------------------------------------------
# Config values, in process.


@pytest.mark.parametrize('overrides, message', [
    ({'dataset.name': 'no_such_dataset'}, "dataset 'no_such_dataset' not found"),
    ({'dataset.name': 'avmnist/snr0db'},
     "dataset 'avmnist/snr0db' not found: avmnist has the configs standard, clean; AV-MNIST with "
     'fsdd/snr0db audio is avmnist/standard with --config.dataset.joins.audio.dataset=fsdd/snr0db'),
    ({'dataset.name': 'synthetic/unique'},
     "dataset 'synthetic/unique' not found: synthetic has the configs redundant, redundancy, "
     'unique_image, unique_audio, synergy, mixed; version 4.0.0 replaced synthetic/unique with '
     'synthetic/unique_image (and unique_audio)'),
    ({'model.encoders.image.name': 'nope'},
     "unknown encoder 'nope' (model.encoders.image.name); valid names: "),
    ({'model.fusion.name': 'nope'}, "unknown fusion 'nope' (model.fusion.name); valid names: "),
    ({'model.frontends.audio.name': 'nope'},
     "unknown front end 'nope' (model.frontends.audio.name); valid names: "),
    ({'optimizer.name': 'adagrad'},
     "unknown optimizer 'adagrad' (optimizer.name); valid names: adamw, sgd"),
    ({'optimizer.schedule': 'step'},
     "unknown schedule 'step' (optimizer.schedule); valid names: constant, cosine"),
    ({'num_train_steps': -3}, 'num_train_steps=-3 must be >= 0'),
    ({'checkpoint_every_steps': 0}, 'checkpoint_every_steps=0 must be positive'),
    ({'optimizer.learning_rate': 0.0}, 'optimizer.learning_rate=0.0 must be positive'),
    ({'optimizer.learning_rate': float('inf')},
     'optimizer.learning_rate=inf must be positive and finite'),
    ({'max_checkpoints_to_keep': 0}, 'max_checkpoints_to_keep=0 must be at least 1 (or None, '
     'every checkpoint): a run keeps its latest checkpoint to resume from'),
    ({'max_checkpoints_to_keep': -1}, 'max_checkpoints_to_keep=-1 must be at least 1'),
    ({'on_nonfinite': 'ignore'}, "on_nonfinite='ignore'; valid values: stop, skip"),
    ({'model.encoders.video': {'name': 'cnn'}},
     "model.encoders has modalities ['video'] that the dataset lacks (dataset.modalities: "
     "['audio', 'image'])"),
    ({'modality_dropout': {'image': 1.0, 'audio': 1.0}},
     "modality_dropout drops every modality of every example (each of ['audio', 'image'] has "
     'p=1); lower at least one below 1'),
    ({'modality_dropout': {'image': 1.5}},
     'modality_dropout.image=1.5 must be a probability in [0, 1]'),
    ({'modality_dropout': {'text': 0.5}},
     "modality_dropout has modalities ['text'] that the model lacks (model.encoders: "
     "['audio', 'image'])"),
    ({'model.head.hidden': (32,)},
     'holds a run with a different model config; resume it with the same config or use a new '
     '--workdir'),
    ({'num_train_epochs': -1.0}, 'num_train_epochs=-1.0 must be a finite number >= 0'),
    ({'grad_accum_steps': 0}, 'grad_accum_steps=0 must be a positive integer (1: no '
     'accumulation)'),
    ({'grad_accum_steps': 3}, 'grad_accum_steps=3 must divide the per-device batch'),
    # Found before training, not when the selecting evaluator first runs.
    ({'select_best': 'validation/accurcy'},
     "select_best=validation/accurcy: evaluator 'validation' gives no 'accurcy'; it gives "
     'accuracy, '),
    # Its accuracy is on every condition's line: it used to fail at the first evaluation.
    ({'evals.robustness': {'type': 'robustness', 'split': 'validation', 'every_steps': 0},
      'select_best': 'robustness/accuracy'},
     "select_best=robustness/accuracy: evaluator 'robustness' gives a line per condition, not "
     'one value to select by; select on a classification evaluator, e.g. validation/accuracy'),
], ids=['dataset', 'removed_dataset_config', 'removed_synthetic_config', 'encoder', 'fusion', 'frontend', 'optimizer',
        'schedule', 'steps',
        'checkpoint_every', 'learning_rate', 'learning_rate_inf', 'keep_no_checkpoint',
        'keep_negative_checkpoints', 'on_nonfinite', 'modality_not_in_dataset',
        'dropout_drops_all', 'dropout_range', 'dropout_unknown_modality', 'resume_other_model',
        'epochs_negative', 'grad_accum_zero', 'grad_accum_not_dividing', 'select_best_metric',
        'select_best_per_condition'])
def test_bad_config_value(existing, overrides, message):
  _rejects(tiny_config(**overrides), existing, message)


def test_a_resume_that_changes_a_setting_is_refused_naming_it(existing, tmp_path, monkeypatch):
  """Rerunning a workdir with --config.batch_size=32 used to rewrite config.json and go on at
  batch 32 without a word. Training length, evaluators and logging may change. The workdir keeps
  the run's history: config_changes.jsonl each change with the step it resumed from, and
  environment.jsonl the libraries, devices and CPU, a line more for a resume on another CPU."""
  old = tiny_config(num_train_steps=4)
  _rejects(tiny_config(num_train_steps=8, batch_size=old.batch_size // 2, seed=3), existing,
           f'{existing} holds a run with other settings: batch_size={old.batch_size} there, '
           f'{old.batch_size // 2} now; seed=0 there, 3 now; resume it with the same config, use '
           'a new --workdir, or pass --accept_config_changes to go on with the new values '
           '(recorded in config_changes.jsonl)')
  # Accepted knowingly: the run goes on and the change is recorded with its step.
  workdir = tmp_path / 'copy'
  shutil.copytree(existing, workdir)
  train.train_and_evaluate(tiny_config(num_train_steps=6, seed=3), str(workdir),
                           accept_config_changes=True)
  changes = workdir / 'config_changes.jsonl'
  assert [json.loads(l) for l in changes.read_text().splitlines()] == [
      {'step': 4, 'changes': {'num_train_steps': [4, 6], 'seed': [0, 3]}}]
  assert json.loads((workdir / 'config.json').read_text())['seed'] == 3
  from mmjax import workdir as workdirs  # pylint: disable=import-outside-toplevel
  here = workdirs.environment()
  assert here['jax'] == jax.__version__ and here['devices'] == jax.device_count() and here['cpu']
  environment = lambda: [json.loads(l) for l in (workdir / 'environment.jsonl').open()]
  assert environment() == [{'step': 0, **here}]  # resumed in the same place: nothing added
  # A change resume allows without asking is recorded too: the record is the run's history.
  monkeypatch.setattr(workdirs, 'cpu_name', lambda: 'Another CPU')
  train.train_and_evaluate(tiny_config(num_train_steps=6, seed=3, log_every_steps=2),
                           str(workdir))
  assert json.loads(changes.read_text().splitlines()[-1]) == {
      'step': 6, 'changes': {'log_every_steps': [4, 2]}}
  assert environment() == [{'step': 0, **here}, {'step': 6, **here, 'cpu': 'Another CPU'}]


def test_a_field_added_since_the_run_was_written_is_no_change(existing, tmp_path):
  """A config.json from before a field existed resumes when the field has the value that gives
  the old behaviour (workdir.ADDED_FIELDS), and not with another value."""
  workdir = tmp_path / 'older'
  shutil.copytree(existing, workdir)
  saved = json.loads((workdir / 'config.json').read_text())
  del saved['grad_accum_steps']
  (workdir / 'config.json').write_text(json.dumps(saved))
  train.train_and_evaluate(tiny_config(num_train_steps=6), str(workdir))
  assert json.loads((workdir / 'config.json').read_text())['grad_accum_steps'] == 1
  (workdir / 'config.json').write_text(json.dumps({**saved, 'num_train_steps': 6}))
  _rejects(tiny_config(num_train_steps=8, grad_accum_steps=2), workdir,
           'grad_accum_steps="(absent)" there, 2 now')


def test_config_or_datasets_json_that_is_not_json_is_one_line(existing, tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(existing, workdir)
  for name in ('config.json', 'datasets.json'):
    good = (workdir / name).read_text()
    (workdir / name).write_text('{"seed": 0,')
    _rejects(tiny_config(num_train_steps=4), workdir,
             f'{workdir / name} is not valid JSON (Expecting property name enclosed in '
             'double quotes at line 1); restore it, or use a new --workdir')
    (workdir / name).write_text(good)


def test_labels_past_num_classes(existing):
  """Blamed on the learning rate before (a non-finite loss at step 1)."""
  _rejects(tiny_config(**{'tasks.label.num_classes': 5}), existing,
           "task 'label': the dataset has labels up to 9 (feature 'label'), but "
           'tasks.label.num_classes=5; set num_classes to at least 10')


def test_resume_on_another_version_of_the_data(existing, monkeypatch):
  """The finished run recorded its data's version (datasets.json); resuming it once the dataset
  has another version would mix two datasets in one run."""
  from mmjax.data import synthetic  # pylint: disable=import-outside-toplevel
  recorded = json.loads((existing / 'datasets.json').read_text())
  assert recorded == {'synthetic/redundant': synthetic.Synthetic.EXAMPLES_VERSIONS['redundant']}
  from mmjax.data import datasets  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(datasets, 'versions', lambda config: {'synthetic/redundant': '99.0.0'})
  _rejects(tiny_config(num_train_steps=4), existing,
           f'{existing} holds a run trained on synthetic/redundant '
           f"{synthetic.Synthetic.EXAMPLES_VERSIONS['redundant']}, which is now 99.0.0; train on "
           'the new data in a new --workdir')


def test_text_longer_than_max_length(existing):
  config = small_config(**{'dataset.modalities.text.max_length': 4})
  _rejects(config, existing, 'exceeds dataset.modalities.text.max_length=4; raise max_length')


def test_empty_split(existing, monkeypatch):
  load = input_pipeline.load_source
  monkeypatch.setattr(input_pipeline, 'load_source',
                      lambda name, config: {**load(name, config), 'validation': []})
  _rejects(tiny_config(), existing, "split 'validation' of dataset 'synthetic/redundant' is empty")


def test_per_process_batch_not_divisible_by_local_devices(existing, monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  monkeypatch.setattr(jax, 'local_device_count', lambda: 2)
  monkeypatch.setattr(jax, 'device_count', lambda: 4)
  _rejects(tiny_config(batch_size=6), existing,
           'batch_size=6 must be a positive multiple of the device count 4 (2 process(es) x 2 '
           'local devices)')


# ------------------------------------------------------------------------------------------------
# Paths: the workdir, init_from, checkpoints, raw data.


def test_workdir_is_a_file_or_under_one(tmp_path):
  path = tmp_path / 'file'
  path.write_text('not a directory')
  _rejects(tiny_config(), path, f'workdir {path} is a file, not a directory; choose another')
  _rejects(tiny_config(), path / 'run',
           f'workdir {path / "run"} cannot be created: {path} is a file; choose another --workdir',
           untouched=[path])


def test_workdir_under_a_read_only_dir(tmp_path):
  """Root writes into a mode-555 directory, and CI runs as root: there the directory is made
  immutable (chattr +i) instead, which stops root too."""
  locked = tmp_path / 'locked'
  locked.mkdir(mode=0o555)
  immutable = os.geteuid() == 0
  if immutable:
    subprocess.run(['chattr', '+i', str(locked)], check=True)
  try:
    _rejects(tiny_config(), locked / 'run', f'workdir {locked / "run"} is not writable')
  finally:
    if immutable:
      subprocess.run(['chattr', '-i', str(locked)], check=True)


def test_init_from_missing_or_empty(existing, tmp_path):
  target = tmp_path / 'new'
  _rejects(tiny_config(init_from=str(tmp_path / 'nope')), target,
           f'init_from={tmp_path / "nope"} does not exist; set it to the workdir of a finished run')
  assert not target.exists()
  (tmp_path / 'empty').mkdir()
  _rejects(tiny_config(init_from=str(tmp_path / 'empty')), target,
           f'init_from={tmp_path / "empty"} holds no checkpoint')
  assert not target.exists()
  (tmp_path / 'a_file').write_text('')
  _rejects(tiny_config(init_from=str(tmp_path / 'a_file')), target,
           f'init_from={tmp_path / "a_file"} is a file, not a workdir; set it to the workdir')
  assert not target.exists()


def test_init_from_with_another_shape(existing, tmp_path):
  target = tmp_path / 'new'
  _rejects(tiny_config(init_from=str(existing), **{'model.head.hidden': (32,)}), target,
           f'init_from={existing}: heads/label/Dense_0/bias has shape (16,) there but (32,) in '
           'this model; make the model match', untouched=[existing])
  assert not target.exists()


def test_resume_without_config_json_of_another_model(existing, tmp_path):
  """Without config.json to compare, the checkpoint's own shapes say it holds another model
  (it used to be called damaged)."""
  workdir = tmp_path / 'no_config'
  shutil.copytree(existing, workdir)
  (workdir / 'config.json').unlink()
  _rejects(tiny_config(num_train_steps=8, **{'model.head.hidden': (32,)}), workdir,
           f'the checkpoint at step 4 in {workdir / "checkpoints"} holds another model or '
           'optimizer than this config builds (')
  _rejects(tiny_config(num_train_steps=8, **{'model.head.hidden': (32,)}), workdir,
           'e.g. params/heads/label/Dense_0/bias has shape (16,) there but (32,) in this config); '
           'rerun with the config that wrote it, or use a new --workdir')


def test_all_checkpoints_damaged(existing, tmp_path):
  workdir = tmp_path / 'damaged'
  shutil.copytree(existing, workdir)
  for f in (workdir / 'checkpoints' / '4').rglob('*'):
    if f.is_file() and f.stat().st_size > 1000:
      f.write_bytes(f.read_bytes()[:100])
  _rejects(tiny_config(num_train_steps=8), workdir,
           f'no checkpoint in {workdir / "checkpoints"} restores (steps [4]); move the damaged '
           'ones')


@pytest.fixture(scope='module')
def fsdd_raw(tmp_path_factory):
  """A raw dir of links to the real FSDD recordings, to damage one at a time."""
  source = RAW_DATA_DIR / 'fsdd' / 'recordings'
  if not source.is_dir():
    pytest.skip(f'no raw FSDD recordings at {source}')
  raw = tmp_path_factory.mktemp('fsdd_raw')
  (raw / 'fsdd' / 'recordings').mkdir(parents=True)
  for name in os.listdir(source):
    (raw / 'fsdd' / 'recordings' / name).symlink_to(source / name)
  return raw


@pytest.mark.parametrize('damage, message', [
    (lambda data: data[:len(data) // 2], '(truncated WAV: '),
    (lambda data: b'ID3 an mp3, say' + data[15:], '(not a valid WAV file: '),
], ids=['truncated_wav', 'not_a_wav'])
def test_damaged_audio_file(existing, fsdd_raw, tmp_path, monkeypatch, damage, message):
  monkeypatch.setenv('MMJAX_RAW_DOWNLOAD', '0')
  victim = fsdd_raw / 'fsdd' / 'recordings' / '3_theo_7.wav'
  data = victim.read_bytes()
  victim.unlink()
  victim.write_bytes(damage(data))
  try:
    config = tiny_config()
    config.dataset = default.avmnist_dataset()
    config.dataset.name, config.dataset.joins = 'fsdd/standard', {}
    config.dataset.raw_data_dir, config.dataset.data_dir = str(fsdd_raw), str(tmp_path / 'tfds')
    default.keep_modalities(config, ('audio',))
    text = _rejects(config, existing, f'{victim}: sha256 ')
    assert message in text and text.endswith(
        're-download it or point MMJAX_RAW_DATA_DIR at a good copy'), text
  finally:
    victim.unlink()
    victim.symlink_to(RAW_DATA_DIR / 'fsdd' / 'recordings' / victim.name)


def test_resume_compares_the_model_and_objective_field_by_field(tmp_path):
  """Inside the sections a resume may never change (model, tasks, objective, freeze), a field
  added since the run was written, at its old behaviour, and a resumable one
  (objective.chunk_size: the same numbers) are no change; any other field is refused."""
  from configs import contrastive  # pylint: disable=import-outside-toplevel
  from mmjax import workdir as workdirs  # pylint: disable=import-outside-toplevel
  versions = {'synthetic/redundant': '3.0.0'}
  config = contrastive.get_config('synthetic')
  assert config.objective.chunk_size == 0
  workdirs.write_config(tmp_path, config, versions)
  config.objective.chunk_size = 8  # allowed, and returned to be recorded
  assert workdirs.check_resume_config(tmp_path, config, versions) == [
      ('objective.chunk_size', 0, 8)]
  saved = json.loads((tmp_path / 'config.json').read_text())
  del saved['objective']['chunk_size']  # a workdir from before the field existed
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  config.objective.chunk_size = 0
  assert workdirs.check_resume_config(tmp_path, config, versions) == []
  config.objective.loss = 'siglip'  # the synthetic variant's is clip
  with pytest.raises(UserError, match='holds a run with a different objective config'):
    workdirs.check_resume_config(tmp_path, config, versions)
