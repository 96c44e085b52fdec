"""Where metrics go: `metrics.jsonl`, TensorBoard event files, and the console (process 0 only)."""

import json
import os

from absl import logging
import jax


class MetricWriter:
  """Appends {'step', 'split', **metrics} lines to workdir/metrics.jsonl and TensorBoard scalars."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    path = os.path.join(workdir, 'metrics.jsonl')
    _drop_lines_after(path, resume_step)
    self._jsonl = open(path, 'a', encoding='utf-8')
    self._tb = SummaryWriter(workdir)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.active:
      return
    self._jsonl.write(json.dumps({'step': int(step), 'split': split, **metrics}) + '\n')
    self._jsonl.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(f'{split}/{name}', value, int(step))

  def close(self) -> None:
    if self.active:
      self._jsonl.close()
      self._tb.close()


def log(msg: str, *args) -> None:
  if jax.process_index() == 0:
    logging.info(msg, *args)


def _drop_lines_after(path: str, step: int) -> None:
  """A resumed run rewrites what came after its checkpoint (and the final test): drop those, and
  a last line cut short by a killed process."""
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    lines = f.readlines()
  def keep(line):
    try:
      entry = json.loads(line)
    except json.JSONDecodeError:
      return False
    return entry['step'] <= step and entry['split'] != 'test'
  kept = [l for l in lines if l.strip() and keep(l) and l.endswith('\n')]
  if len(kept) != len(lines):
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      f.writelines(kept)
    os.replace(tmp, path)
