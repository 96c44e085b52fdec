"""The run's workdir: checks before anything is written, config.json, and where checkpoints go.

Every path goes through `etils.epath`, so a workdir may be local or on a storage scheme epath
supports (`gs://BUCKET/run` with the gcs extra, `pip install -e '.[gcs]'`; also s3://, az://). A
relative local path is made absolute once, where the user's value is read, so that every process
and library later sees the same folder; a URL is left as it is (`os.path.abspath('gs://b/run')`
would turn it into a local folder `<cwd>/gs:/b/run`).
"""

import contextlib
import fcntl
import importlib.metadata
import json
import os
import platform
import socket
import time
import uuid

from absl import logging
from etils import epath
import jax

from mmjax.errors import UserError

# Schemes etils.epath maps to a storage backend; anything else with `://` is not a path epath reads.
REMOTE_SCHEMES = ('gs', 's3', 'az', 'hf')
GCS_EXTRA = "install the gcs extra: pip install -e '.[gcs]'"


def is_remote(path) -> bool:
  """True for a URL such as gs://bucket/run (a storage scheme), False for a local path."""
  return '://' in os.fspath(path)


def resolve(path) -> epath.Path:
  """`path` as an epath.Path: URLs as given, local paths with `~` expanded and made absolute."""
  text = os.fspath(path)
  if is_remote(text):
    scheme = text.split('://', 1)[0]
    if scheme not in REMOTE_SCHEMES:
      raise UserError(f'{text}: unsupported scheme {scheme}://; use a local path or one of '
                      f'{", ".join(s + "://" for s in REMOTE_SCHEMES)}')
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def _probe(path: epath.Path, workdir) -> bool:
  """path.exists(), with a missing storage backend (e.g. gcsfs for gs://) as a UserError."""
  try:
    return path.exists()
  except ImportError as e:
    raise UserError(f'workdir {workdir}: {str(path).split("://")[0]}:// needs a package that is not '
                    f'installed ({e}); {GCS_EXTRA}') from None


def check(workdir) -> None:
  """A workdir that cannot be used fails here, before anything is written."""
  path = resolve(workdir)
  if _probe(path, workdir):
    if not path.is_dir():
      raise UserError(f'workdir {workdir} is a file, not a directory; choose another --workdir')
    return
  # The nearest existing ancestor must be a directory. On an object store a prefix is a
  # "directory" only once something is under it, so the walk stops below the bucket.
  top = 3 if is_remote(workdir) else 1  # ('/', 'gs', 'bucket') / ('/',)
  parent = path.parent
  while len(parent.parts) > top and not parent.exists():
    parent = parent.parent
  if len(parent.parts) > top and not parent.is_dir():
    raise UserError(f'workdir {workdir} cannot be created: {parent} is a file; choose another '
                    '--workdir')


def make(workdir) -> None:
  """Creates the workdir and proves it writable (every process: each writes a probe file)."""
  path = resolve(workdir)
  probe = path / f'.mmjax-write-test-{uuid.uuid4().hex}'
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b'')
    probe.unlink()
  except OSError as e:
    raise UserError(f'workdir {workdir} is not writable ({e.strerror or e}); choose another '
                    '--workdir or fix its permissions') from None


def checkpoint_dir(workdir) -> epath.Path:
  """Where the run's Orbax checkpoints go: `<workdir>/checkpoints`."""
  return resolve(workdir) / 'checkpoints'


def best_dir(workdir) -> epath.Path:
  """Where model selection keeps the best state so far: `<workdir>/best`."""
  return resolve(workdir) / 'best'


def config_path(workdir) -> epath.Path:
  return resolve(workdir) / 'config.json'


def datasets_path(workdir) -> epath.Path:
  """`<workdir>/datasets.json`: {dataset name: version} of the data the run trained on."""
  return resolve(workdir) / 'datasets.json'


def _write_json(path: epath.Path, text: str) -> None:
  """Process 0 writes `path` whole, then renames it into place."""
  if jax.process_index() != 0:
    return
  tmp = path.parent / f'{path.name}.tmp'
  tmp.write_text(text, encoding='utf-8')
  tmp.replace(path)


def write_config(workdir, config, dataset_versions: dict[str, str]) -> None:
  """The resolved config as `<workdir>/config.json`, and the datasets' versions as
  `datasets.json`."""
  _write_json(config_path(workdir), config.to_json_best_effort(indent=2, sort_keys=True))
  _write_json(datasets_path(workdir), json.dumps(dataset_versions, indent=2, sort_keys=True))


# Fields a resumed run may change: how long it trains, what is measured and logged, where data
# and caches live, how memory is laid out (fsdp, objective.chunk_size: the same numbers), where
# a fixed front end runs (precompute_frontends: the same up to the last bits). Any other change
# makes the resumed run another run than the one recorded. CHANGES_FILE records both kinds.
RESUMABLE_FIELDS = ('num_train_steps', 'num_train_epochs', 'evals', 'log_every_steps',
                    'checkpoint_every_steps', 'max_checkpoints_to_keep', 'compilation_cache',
                    'profile', 'on_nonfinite', 'init_from', 'init_from_pattern',
                    'dataset.data_dir', 'dataset.raw_data_dir', 'dataset.num_workers',
                    'dataset.read_threads', 'fsdp', 'objective.chunk_size',
                    'precompute_frontends')
# Fields added to the config since a workdir may have been written, with the value that gives
# what runs did before them: their absence from an older config.json is no change.
ADDED_FIELDS = {'grad_accum_steps': 1, 'num_train_epochs': 0.0, 'fsdp': False,
                'objective.chunk_size': 0, 'early_stopping_patience': 0,
                'early_stopping_target': 0.0, 'dataset.one_example_per_pair': False,
                'optimizer.weight_decay_on': 'kernels', 'precompute_frontends': False,
                'optimizer.lr_multipliers': []}
CHANGES_FILE = 'config_changes.jsonl'


def _read_json(path: epath.Path):
  """A workdir's JSON file; one that is not JSON (damaged, edited) is one line."""
  try:
    return json.loads(path.read_text(encoding='utf-8'))
  except json.JSONDecodeError as e:
    raise UserError(f'{path} is not valid JSON ({e.msg} at line {e.lineno}); restore it, or use '
                    'a new --workdir') from None


def config_differences(saved, now, path: str = '') -> list[tuple[str, object, object]]:
  """(dotted field, saved value, current value) of every leaf where two JSON configs differ
  ('(absent)' for a field one lacks)."""
  if isinstance(saved, dict) and isinstance(now, dict):
    out = []
    for key in sorted(set(saved) | set(now)):
      where = f'{path}.{key}' if path else key
      out += config_differences(saved.get(key, '(absent)'), now.get(key, '(absent)'), where)
    return out
  if saved == '(absent)' and path in ADDED_FIELDS and now == ADDED_FIELDS[path]:
    return []
  return [] if saved == now else [(path, saved, now)]


def _resumable(field: str) -> bool:
  return any(field == f or field.startswith(f + '.') for f in RESUMABLE_FIELDS)


def check_resume_config(workdir, config, dataset_versions: dict[str, str],
                        accept_changes: bool = False) -> list[tuple[str, object, object]]:
  """A workdir holds one run: resuming it with another model, tasks, objective or freeze
  pattern is an error (they change what the checkpointed state holds), and so is another
  version of a dataset it trained on (the run would mix two datasets). Any other change outside
  RESUMABLE_FIELDS is an error naming each field with its old and new value, unless
  `accept_changes`. Returns every change, the resumable ones included (a longer budget bends
  the learning-rate curve, precomputed front ends move the last bits), for `record_changes`."""
  path = config_path(workdir)
  if not path.exists():
    return []
  saved = _read_json(path)
  current = json.loads(config.to_json_best_effort())
  differences = config_differences(saved, current)
  changes = [d for d in differences if not _resumable(d[0])]
  for key in ('model', 'tasks', 'objective', 'freeze'):
    # Field by field, so that an added field at its old behaviour and the resumable ones inside
    # these (objective.chunk_size) are no change.
    if any(field == key or field.startswith(key + '.') for field, _, _ in changes):
      raise UserError(f'{workdir} holds a run with a different {key} config; resume it with the '
                      f'same config or use a new --workdir')
  changed = version_change(workdir, dataset_versions)
  if changed:
    raise UserError(f'{workdir} holds a run trained on {changed}; train on the new data in a '
                    'new --workdir')
  if changes and not accept_changes:
    listed = '; '.join(f'{f}={json.dumps(old)} there, {json.dumps(new)} now'
                       for f, old, new in changes)
    raise UserError(f'{workdir} holds a run with other settings: {listed}; resume it with the '
                    'same config, use a new --workdir, or pass --accept_config_changes to go on '
                    f'with the new values (recorded in {CHANGES_FILE})')
  return differences


def record_changes(workdir, changes, step: int) -> None:
  """Appends the config changes a resumed run made, with the step it resumed from."""
  if not changes or jax.process_index() != 0:
    return
  logging.warning('resuming %s at step %d with changed settings: %s', workdir, step,
                  '; '.join(f'{f}: {json.dumps(old)} -> {json.dumps(new)}' for f, old, new in changes))
  path = resolve(workdir) / CHANGES_FILE
  earlier = path.read_text(encoding='utf-8') if path.exists() else ''
  line = json.dumps({'step': step, 'changes': {f: [old, new] for f, old, new in changes}})
  _write_json(path, earlier + line + '\n')


ENVIRONMENT_FILE = 'environment.jsonl'


def cpu_name() -> str:
  """The host CPU's model name ('AMD EPYC 9B14'), or what `platform` knows where /proc/cpuinfo
  does not say."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def environment() -> dict:
  """What besides the config and the data decides a run's figures to the last bit: the library
  versions, the devices and the host CPU (XLA:CPU compiles for the host's vector instructions,
  so another CPU rounds differently and training drifts from the recorded run)."""
  versions = {}
  for package in ('jax', 'jaxlib', 'flax', 'optax'):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  return {**versions, 'backend': jax.default_backend(),
          'device_kind': jax.devices()[0].device_kind, 'devices': jax.device_count(),
          'processes': jax.process_count(), 'cpu': cpu_name()}


def record_environment(workdir, step: int) -> None:
  """Appends `environment()` with the step the run starts or resumes from to
  `<workdir>/environment.jsonl` when it differs from the last line: one line for a run trained in
  one place, one more for each resume on another machine or library version."""
  if jax.process_index() != 0:
    return
  path = resolve(workdir) / ENVIRONMENT_FILE
  earlier = path.read_text(encoding='utf-8') if path.exists() else ''
  now = environment()
  lines = [json.loads(line) for line in earlier.splitlines() if line.strip()]
  if lines and {k: v for k, v in lines[-1].items() if k != 'step'} == now:
    return
  _write_json(path, earlier + json.dumps({'step': step, **now}) + '\n')


def version_change(workdir, dataset_versions: dict[str, str]) -> str:
  """'' when the run in `workdir` trained on these versions of its datasets (or predates
  datasets.json), else what changed: 'synthetic/unique 2.0.0, which is now 3.0.0'."""
  path = datasets_path(workdir)
  return version_differences(_read_json(path), dataset_versions) if path.exists() else ''


def version_differences(saved: dict[str, str], now: dict[str, str]) -> str:
  """'' when every dataset in both has the same version, else what changed (`version_change`)."""
  return '; '.join(f'{name} {saved[name]}, which is now {version}'
                   for name, version in sorted(now.items())
                   if name in saved and saved[name] != version)


LOCK_FILE = 'lock'


@contextlib.contextmanager
def exclusive(workdir):
  """Process 0 holds `<workdir>/lock` for the run's life: a second run on the same workdir stops
  at once with one line naming the holder. The kernel releases the lock when its process ends,
  however it ends, so a lock file left by a crash is taken over (with a warning naming it).
  Local workdirs only: an object store (gs://) has no such lock; give each run its own there."""
  if jax.process_index() != 0 or is_remote(workdir):
    yield
    return
  path = resolve(workdir) / LOCK_FILE
  f = open(path, 'a+', encoding='utf-8')  # pylint: disable=consider-using-with
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'another process'
      raise UserError(f'workdir {workdir} is in use by {holder}; wait for that run to end, or '
                      'use another --workdir') from None
    f.seek(0)
    previous = f.read().strip()
    if previous:
      logging.warning('workdir %s: taking over the lock of %s, which no longer runs', workdir,
                      previous)
    f.seek(0)
    f.truncate()
    f.write(f'the run of pid {os.getpid()} on {socket.gethostname()}, started '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    try:
      yield
    finally:
      f.seek(0)
      f.truncate()  # a clean end leaves no holder to name
  finally:
    f.close()  # releases the flock
