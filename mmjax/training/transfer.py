"""Transfer learning: start a fresh run from a finished run's parameters (`config.init_from`),
optionally only those whose path matches `config.init_from_pattern`; `config.freeze` keeps
parameters fixed (mmjax.optim).

Parameter paths read like 'encoders_image/Conv_0/kernel' (`optim.param_path`). Only the source's
evaluated weights (its moving average where it kept one, else its parameters) and batch
statistics are read from its checkpoint, never its optimizer state.
"""

import re

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp

from mmjax import checkpoint
from mmjax import optim
from mmjax import parallel
from mmjax import workdir as workdirs
from mmjax import writers
from mmjax.errors import UserError


def source_checkpoints(source: str) -> epath.Path:
  """The checkpoint folder of workdir `source`; a UserError when it holds no checkpoint."""
  ckpt_dir = epath.Path(source) / 'checkpoints'
  if not checkpoint.steps_on_disk(ckpt_dir):
    path = epath.Path(source)
    problem = ('is a file, not a workdir' if path.is_file() else
               'does not exist' if not path.is_dir() else 'holds no checkpoint')
    raise UserError(f'init_from={source} {problem}; set it to the workdir of a finished run, or to '
                    '"" to train from scratch')
  return ckpt_dir


def fresh_source(config, workdir) -> str:
  """`config.init_from`, checked to hold a checkpoint (before anything is built), for a fresh run;
  '' for none, and for a run resuming in `workdir` (init_from is for fresh runs only)."""
  source = config.get('init_from') or ''
  if source and checkpoint.steps_on_disk(workdirs.checkpoint_dir(workdir)):
    writers.log('resuming %s: init_from is for fresh runs only', workdir)
    return ''
  if source:
    source_checkpoints(source)
  return source


def init_from_checkpoint(config, state, mesh):
  """Copies params and batch_stats whose path (and pattern) match from `config.init_from`'s latest
  checkpoint (its moving average in place of its params where it kept one), into the params and,
  where this run keeps one, its moving average; everything else keeps its fresh initialisation.
  Says what it copied."""
  source = config.init_from
  mngr = checkpoint.manager(source_checkpoints(source), None, create=False)
  try:
    step, saved = checkpoint.restore_model(mngr, parallel.replicated(mesh))
  finally:
    mngr.close()
  saved = {optim.param_path(p): x for p, x in jax.tree_util.tree_leaves_with_path(saved)}
  pattern = re.compile(config.get('init_from_pattern') or '')
  copied = []

  def pick(path, x):
    name = optim.param_path(path)
    if name not in saved or not pattern.search(name):
      return x
    if saved[name].shape != x.shape:
      raise UserError(f'init_from={source}: {name} has shape {tuple(saved[name].shape)} there but '
                      f'{tuple(x.shape)} in this model; make the model match or rename that '
                      'module to train it from scratch')
    copied.append(name)
    return jax.device_put(saved[name].astype(x.dtype), x.sharding)  # in the state's layout

  current = {'params': state.params, 'batch_stats': state.batch_stats}
  new = jax.tree_util.tree_map_with_path(pick, current)
  total = len(jax.tree.leaves(current))
  if copied:
    modules = sorted({n.removeprefix('batch_stats/').split('/')[0] for n in copied})
    writers.log('init_from: copied %d of %d arrays from %s step %d (%s)', len(copied), total,
                source, step, ', '.join(modules))
  else:
    logging.warning('init_from: %s step %d shares no parameter path with this model%s; nothing '
                    'copied', source, step,
                    ' that matches init_from_pattern' if config.get('init_from_pattern') else '')
  state = state.replace(params=new['params'], batch_stats=new['batch_stats'])
  if state.ema_params:  # the moving average evaluators read starts from the copied weights too,
    # in buffers of its own: the train step donates the state, and one buffer cannot go twice
    state = state.replace(ema_params=jax.tree.map(jnp.copy, new['params']))
  return state
