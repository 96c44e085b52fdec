"""Where metrics go: `metrics.jsonl`, TensorBoard event files, and the console (process 0 only).

Paths go through etils.epath (see mmjax.workdir): a local workdir's metrics.jsonl is appended to
and flushed line by line; on an object store (gs://...), which cannot append, the file is
rewritten whole at each write. TensorBoard event files on gs:// need google-cloud-storage
(the gcs extra, `pip install -e '.[gcs]'`); without it the run warns and writes metrics.jsonl
only.
"""

import json
import logging as std_logging
import numbers
import re
import uuid

from absl import logging
import jax
import numpy as np

from mmjax import workdir as workdirs

METRICS_FILE = 'metrics.jsonl'

# Metrics that depend on the machine and the moment, not on what was computed.
TIMING_KEYS = ('examples_per_sec', 'steps_per_sec', 'wall_s')
# Fields of a metrics line that describe it rather than measure the model: kept in the jsonl line,
# not drawn as a TensorBoard curve.
NOT_CURVES = ('num_examples',)


def _json_default(value):
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def _number(value) -> float | None:
  """A scalar metric as a float, or None for anything else (strings such as a condition)."""
  if isinstance(value, (bool, np.bool_)):
    return float(value)
  if isinstance(value, (numbers.Real, np.number)):
    return float(value)
  if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0 and \
      np.issubdtype(np.asarray(value).dtype, np.number):
    return float(value)
  return None


def tensorboard_tag(split: str, name: str, condition: str | None = None) -> str:
  """`split/name`, or `split/condition/name` for a line that carries a condition.

  TensorBoard tags allow letters, digits and `_.-/`; other characters become `_`
  (`missing=audio` → `missing_audio`, `noise=audio,snr_db=-6` → `noise_audio_snr_db_-6`).
  """
  tag = f'{split}/{condition}/{name}' if condition else f'{split}/{name}'
  return re.sub(r'[^A-Za-z0-9_.\-/]', '_', tag)


class MetricWriter:
  """Appends {'step', 'split', **metrics} lines to workdir/metrics.jsonl and TensorBoard scalars.

  Opened by a run that resumes from a checkpoint at `resume_step`, it first drops the lines that
  run will write again: every line after `resume_step` and the lines at `resume_step` of the
  splits in `rerun_splits` (evaluators that run again at that step); lines that are not metrics
  lines (one cut short by a killed process, a note) move to `metrics.jsonl.unparsed`.
  TensorBoard's points after `resume_step` are purged the same way.
  """

  def __init__(self, workdir, resume_step: int = 0, rerun_splits=()):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    root = workdirs.resolve(workdir)
    self._path = root / METRICS_FILE
    self._remote = workdirs.is_remote(workdir)
    self._lines = drop_rewritten_lines(self._path, resume_step, rerun_splits)
    self._jsonl = None if self._remote else self._path.open('a', encoding='utf-8')
    self._tb = _summary_writer(root, purge_step=resume_step + 1)

  def write(self, step: int, split: str, metrics: dict) -> None:
    """One line; non-numeric fields (e.g. 'condition': 'missing=audio') stay in the jsonl line,
    TensorBoard gets the numeric ones under `split[/condition]/name`."""
    if not self.active:
      return
    line = json.dumps({'step': int(step), 'split': split, **metrics},
                      default=_json_default) + '\n'
    if self._jsonl is not None:
      self._jsonl.write(line)
      self._jsonl.flush()
    else:
      self._lines.append(line)
      self._path.write_text(''.join(self._lines), encoding='utf-8')
    if self._tb is None:
      return
    condition = metrics.get('condition')
    condition = condition if isinstance(condition, str) else None
    for name, value in metrics.items():
      number = None if name in NOT_CURVES else _number(value)
      if number is not None:
        self._tb.add_scalar(tensorboard_tag(split, name, condition), number, int(step))

  def write_config(self, config: dict, evaluators=()) -> None:
    """The resolved config (JSON) as TensorBoard text, and its scalar fields as hparams, so that
    TensorBoard's HParams tab compares runs by their settings against each evaluator's
    accuracy."""
    if not self.active or self._tb is None:
      return
    from tensorboardX.summary import hparams  # pylint: disable=import-outside-toplevel
    text = json.dumps(config, indent=2, default=str)
    self._tb.add_text('config', '    ' + text.replace('\n', '\n    '), 0)  # indented: code
    metrics = {tensorboard_tag(name, 'accuracy'): 0.0 for name in ('train', *evaluators)}
    for summary in hparams(flat_fields(config), metrics):
      self._tb.file_writer.add_summary(summary)

  def close(self) -> None:
    if not self.active:
      return
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def flat_fields(config: dict, prefix: str = '') -> dict:
  """{'optimizer.learning_rate': 0.1, ...}: a nested config's leaves as numbers, booleans or
  strings (lists and empty dicts as their JSON text), the values TensorBoard's hparams take."""
  out = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict) and value:
      out.update(flat_fields(value, name + '.'))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = json.dumps(value, default=str)
  return out


def _summary_writer(root, purge_step: int):
  """tensorboardX's writer for `root`; None (with a warning) where its storage extra is missing."""
  from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  try:
    # purge_step: TensorBoard hides the earlier event files' points from this step on, as the
    # metrics.jsonl lines after the resume step are dropped. The suffix keeps a writer opened
    # within the same second as the last one (file names hold seconds) from replacing its file.
    return SummaryWriter(str(root), purge_step=purge_step,
                         filename_suffix=f'.{uuid.uuid4().hex[:8]}')
  except ImportError as e:
    logging.warning('no TensorBoard event files in %s (%s); to write them, %s; metrics.jsonl is '
                    'written as usual', root, e, workdirs.GCS_EXTRA)
    return None


def log(msg: str, *args) -> None:
  """An INFO line from process 0, attributed to the caller (not to this function)."""
  if jax.process_index() == 0:
    logging.info(msg, *args)


logging.ABSLLogger.register_frame_to_skip(__file__, log.__name__)


def duration(seconds: float) -> str:
  """'05:04:03', or '2d 05:04:03' past a day."""
  seconds = int(round(seconds))
  days, rest = divmod(seconds, 86400)
  clock = f'{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}'
  return f'{days}d {clock}' if days else clock


def _entry(line: str) -> dict | None:
  """A metrics line as the trainer writes it, or None (cut short, not JSON, not a step's)."""
  if not line.endswith('\n'):
    return None
  try:
    entry = json.loads(line)
  except json.JSONDecodeError:
    return None
  if not isinstance(entry, dict) or not isinstance(entry.get('step'), int):
    return None
  return entry


def read_metrics(workdir) -> list[dict]:
  """The metrics lines of `workdir`'s metrics.jsonl ([] if none); lines that are not the
  trainer's (cut short, not JSON) are left out."""
  path = workdirs.resolve(workdir) / METRICS_FILE
  if not path.exists():
    return []
  lines = path.read_text(encoding='utf-8').splitlines(keepends=True)
  return [entry for entry in map(_entry, lines) if entry is not None]


def drop_rewritten_lines(path, step: int, rerun_splits=()) -> list[str]:
  """Drops from `path` the lines a run resumed at `step` writes again (see MetricWriter) and
  returns the lines kept. Lines that are not the trainer's (cut short by a killed process, a
  note, garbage) move to `<path>.unparsed` with a warning: nothing is deleted unsaid. The file is
  replaced whole, and only if something is dropped or moved."""
  if not path.exists():
    return []
  lines = path.read_text(encoding='utf-8').splitlines(keepends=True)
  rerun = set(rerun_splits)
  kept, foreign = [], []
  for line in lines:
    entry = _entry(line)
    if entry is None:
      if line.strip():
        foreign.append(line if line.endswith('\n') else line + '\n')
    elif entry['step'] < step or (entry['step'] == step and entry.get('split') not in rerun):
      kept.append(line)
  if foreign:
    aside = path.parent / (path.name + '.unparsed')
    earlier = aside.read_text(encoding='utf-8') if aside.exists() else ''
    aside.write_text(earlier + ''.join(foreign), encoding='utf-8')
    logging.warning('%s: moved %d line(s) that are not metrics lines (cut short, or not JSON) to '
                    '%s', path, len(foreign), aside)
  if len(kept) != len(lines):
    tmp = path.parent / (path.name + '.tmp')
    tmp.write_text(''.join(kept), encoding='utf-8')
    tmp.replace(path)
  return kept


# Library notices that do not apply to mmjax's runs: TFDS recommends OpenCV for decoding large
# images (mmjax's are 28x28 PNGs, which PIL decodes as fast), and JAX says at INFO that it found
# no TPU on every machine without one (a TPU run names its devices in mmjax's own first line).
_NOT_APPLICABLE = (('image_feature.py', 'OpenCV is not installed'),
                   ('xla_bridge.py', "Unable to initialize backend 'tpu'"))


class QuietLibraries(std_logging.Filter):
  """Orbax logs each save's internals at INFO: its warnings are kept, the rest dropped. A failed
  save is logged by each of Orbax's background threads with a traceback; mmjax reports it in one
  line (checkpoint.Saver), so those records keep their first line only."""

  def filter(self, record):
    if any(record.pathname.endswith(f) and str(record.msg).startswith(m)
           for f, m in _NOT_APPLICABLE):
      return False
    if '/orbax/' not in record.pathname:
      return True
    if record.exc_info:
      record.exc_info, record.exc_text = None, None
    return record.levelno >= std_logging.WARNING
