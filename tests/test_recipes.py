"""What the configs' docstrings and the datasheet say about a recipe is what the configs resolve to,
and `lenet` is MultiBench's LeNet.

Claims are read from prose with a fixed vocabulary (`PATTERNS`): "plain SGD", "lr 0.1",
"weight decay 1e-4", "batch 128", "1,300 steps", "3 epochs", "no schedule", "no warm-up",
"no momentum", "no clipping", "64-bin log-mel", "hop 80", "256-sample window", "97×64 log-mel",
"LeNet(1,6,3) on images", "MLP 240-100-10" (input-hidden-output, or hidden sizes only),
"one hidden layer of 100 units", "no dropout", "images scaled to [0, 1]", "48 + 192 features",
"down to a 1x1 map", "with BatchNorm" / "without BatchNorm", and the structural "whose dataset,
encoders and optimizer recipe this reuses" / "the late_fusion recipe with every other modality
removed". Every match is checked against the resolved config; a paragraph that begins
"Departures from" describes another system and is not read.
"""

import ast
import dataclasses
import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default, late_fusion, tensor_fusion
from mmjax.data import avmnist
from mmjax.errors import UserError
from mmjax.models.encoders.conv import lenet
from mmjax.models.model import build_model
from tests.conftest import REPO

CONFIGS = sorted(p.stem for p in (REPO / 'configs').glob('*.py')
                 if p.stem not in ('__init__', 'default'))
OTHER_SYSTEM = 'Departures from'
NUM = r'(\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)'
# Training-set sizes (docs/datasets.md), for "N epochs".
TRAIN_EXAMPLES = {'avmnist': avmnist.N_TRAIN_IMAGES}
# One example's model inputs, for claims about feature sizes.
INPUTS = {'avmnist': {'image': (28, 28, 1), 'audio': (avmnist.AUDIO_LENGTH,)}}

PATTERNS = {
    'plain_sgd': r'\bplain SGD\b',
    'sgd': r'\bSGD\b',
    'adamw': r'\bAdamW\b',
    'learning_rate': rf'\b(?:lr|learning rate|SGD at)\s+{NUM}',
    'weight_decay': rf'\bweight decay(?: of)?\s+{NUM}',
    'batch_size': r'\bbatch(?: size)?\s+(\d+)\b',
    'steps': r'\b(\d[\d,]*) steps\b',
    'epochs': r'\b(\d+) epochs?\b',
    'no_schedule': r'\bno (?:learning-rate )?schedule\b|\bconstant learning rate\b',
    'no_warmup': r'\bno warm-?up\b',
    'no_momentum': r'\bno momentum\b',
    'momentum': rf'\bmomentum\s+{NUM}',
    'no_clipping': r'\bno (?:gradient )?clipping\b',
    'clipping': rf'\bgradient norm is clipped at\s+{NUM}',
    'ema': rf'\bmoving average of the parameters with decay\s+{NUM}',
    'clip_norm': r'\beach clip standardised by its own mean and std\b',
    'n_mels': r'\b(\d+)-bin log-mel\b',
    'hop': r'\bhop(?: length)?\s+(\d+)\b',
    'window': r'\b(\d+)-sample window\b',
    'spectrogram': r'\b(\d+)\s*[×x]\s*(\d+) (?:log-mel|spectrogram)',
    'lenet': r'\bLeNet\((\d+),\s*(\d+),\s*(\d+)\) on ([^,;.]*)',
    'mlp': r'\bMLP (\d+(?:-\d+)+)\b',
    'hidden_layer': r'\bone hidden layer of (\d+) units\b',
    'no_dropout': r'\bno (?:head )?dropout\b',
    'dropout': rf'\bdropout\s+{NUM}',
    'image_unit_scale': r'\bimages scaled to \[0, 1\]',
    'features': r'\b(\d+) \+ (\d+) features\b',
    'one_by_one': r'\bdown to a 1x1 map\b',
    'batch_norm': r'\b(?:with|has) BatchNorm\b',
    'no_batch_norm': r'\b(?:without|no) BatchNorm\b',
    'reuses_late_fusion': r'whose dataset, encoders and optimizer recipe this reuses',
    'late_fusion_minus': r'the late_fusion recipe with every other modality removed',
}


@dataclasses.dataclass
class Claim:
  kind: str
  groups: tuple
  phrase: str


def claims(text: str) -> list[Claim]:
  """Every phrase of the vocabulary in `text`, except in paragraphs about another system."""
  found = []
  for paragraph in re.split(r'\n\s*\n', text):
    paragraph = ' '.join(paragraph.split())
    if paragraph.startswith(OTHER_SYSTEM):
      continue
    for kind, pattern in PATTERNS.items():
      for m in re.finditer(pattern, paragraph):
        found.append(Claim(kind, m.groups(), m.group(0)))
  return found


def _num(s: str) -> float:
  return float(s.replace(',', ''))


def _dataset(config) -> str:
  return config.dataset.name.split('/')[0]


@dataclasses.dataclass(frozen=True)
class _Shapes:
  """Feature sizes of a config's model on one example (computed abstractly, nothing runs)."""
  encoder_dims: dict
  encoder_tokens: dict
  head_input: int


def _shapes(config) -> _Shapes:
  dataset = _dataset(config)
  if dataset not in INPUTS:
    raise AssertionError(f'no input shapes for dataset {dataset!r}: add it to INPUTS')
  model = build_model(config)
  inputs = {m: jnp.zeros((1, *INPUTS[dataset][m])) for m in config.model.encoders}
  present = {m: jnp.ones((1,), bool) for m in inputs}
  variables = jax.eval_shape(model.init, jax.random.key(0), inputs, present)
  encodings = jax.eval_shape(
      lambda v, x: model.apply(v, x, method=model.encode), variables, inputs)
  task = sorted(config.tasks)[0]
  head = variables['params']['heads'][task]
  first = head['Dense_0']['kernel'].shape[0]
  return _Shapes({m: e.pooled.shape[-1] for m, e in encodings.items()},
                 {m: int(np.prod(e.tokens.shape[1:-1])) for m, e in encodings.items()}, first)


def _frames(frontend) -> int:
  return 1 + (avmnist.AUDIO_LENGTH - frontend.n_fft) // frontend.hop_length


def contradictions(found: list[Claim], config, name: str = '') -> list[str]:
  """'phrase: what the config says instead' for every claim the resolved config contradicts."""
  opt, model = config.optimizer, config.model
  audio_frontend = model.get('frontends', {}).get('audio')
  shapes = None
  out = []

  def shape_info():
    nonlocal shapes
    shapes = shapes or _shapes(config)
    return shapes

  def check(claim, ok, actual):
    if not ok:
      out.append(f'{name}: "{claim.phrase}" but {actual}')

  for c in found:
    g = c.groups
    if c.kind == 'plain_sgd':
      check(c, opt.name == 'sgd', f'optimizer.name={opt.name!r}')
      check(c, not opt.get('momentum'), f'optimizer.momentum={opt.get("momentum")}')
      check(c, not opt.get('nesterov', False), 'optimizer.nesterov=True')
      check(c, opt.schedule == 'constant', f'optimizer.schedule={opt.schedule!r}')
      check(c, not opt.get('warmup_steps', 0), f'optimizer.warmup_steps={opt.warmup_steps}')
      check(c, not opt.get('grad_clip_norm', 0), f'optimizer.grad_clip_norm={opt.grad_clip_norm}')
    elif c.kind == 'sgd':
      check(c, opt.name == 'sgd', f'optimizer.name={opt.name!r}')
    elif c.kind == 'adamw':
      check(c, opt.name == 'adamw', f'optimizer.name={opt.name!r}')
    elif c.kind == 'learning_rate':
      check(c, np.isclose(opt.learning_rate, _num(g[0])), f'learning_rate={opt.learning_rate}')
    elif c.kind == 'weight_decay':
      check(c, np.isclose(opt.weight_decay, _num(g[0])), f'weight_decay={opt.weight_decay}')
    elif c.kind == 'batch_size':
      check(c, config.batch_size == _num(g[0]), f'batch_size={config.batch_size}')
    elif c.kind == 'steps':
      check(c, config.num_train_steps == _num(g[0]), f'num_train_steps={config.num_train_steps}')
    elif c.kind == 'epochs':
      n = TRAIN_EXAMPLES[_dataset(config)]
      epochs = config.num_train_steps * config.batch_size / n
      check(c, round(epochs) == _num(g[0]), f'{config.num_train_steps} steps x '
            f'{config.batch_size} = {epochs:.2f} epochs of {n}')
    elif c.kind == 'no_schedule':
      check(c, opt.schedule == 'constant' and not opt.get('warmup_steps', 0),
            f'optimizer.schedule={opt.schedule!r}, warmup_steps={opt.get("warmup_steps", 0)}')
    elif c.kind == 'no_warmup':
      check(c, not opt.get('warmup_steps', 0), f'optimizer.warmup_steps={opt.warmup_steps}')
    elif c.kind == 'no_momentum':
      check(c, not opt.get('momentum'), f'optimizer.momentum={opt.get("momentum")}')
    elif c.kind == 'momentum':
      check(c, np.isclose(opt.get('momentum') or 0.0, _num(g[0])),
            f'optimizer.momentum={opt.get("momentum")}')
    elif c.kind == 'no_clipping':
      check(c, not opt.get('grad_clip_norm', 0), f'optimizer.grad_clip_norm={opt.grad_clip_norm}')
    elif c.kind == 'clipping':
      check(c, np.isclose(opt.get('grad_clip_norm', 0.0), _num(g[0])),
            f'optimizer.grad_clip_norm={opt.get("grad_clip_norm", 0.0)}')
    elif c.kind == 'ema':
      check(c, np.isclose(config.get('ema_decay', 0.0), _num(g[0])),
            f'ema_decay={config.get("ema_decay", 0.0)}')
    elif c.kind in ('clip_norm', 'n_mels', 'hop', 'window', 'spectrogram'):
      if 'audio' not in model.encoders:
        continue
      if audio_frontend is None or audio_frontend.name != 'logmel':
        check(c, False, f'model.frontends.audio={audio_frontend}')
        continue
      if c.kind == 'clip_norm':
        check(c, audio_frontend.get('per_example_norm', False),
              f'per_example_norm={audio_frontend.get("per_example_norm", False)}')
      elif c.kind == 'n_mels':
        check(c, audio_frontend.n_mels == _num(g[0]), f'n_mels={audio_frontend.n_mels}')
      elif c.kind == 'hop':
        check(c, audio_frontend.hop_length == _num(g[0]),
              f'hop_length={audio_frontend.hop_length}')
      elif c.kind == 'window':
        check(c, audio_frontend.n_fft == _num(g[0]), f'n_fft={audio_frontend.n_fft}')
      else:
        actual = (_frames(audio_frontend), audio_frontend.n_mels)
        check(c, actual == (_num(g[0]), _num(g[1])), f'the front end gives {actual[0]}x{actual[1]}')
    elif c.kind == 'lenet':
      rest = g[3]
      modality = ('image' if 'image' in rest else
                  'audio' if re.search(r'audio|log-mel|spectrogram', rest) else None)
      if modality is None:
        check(c, False, f'no modality named in {rest!r}')
      elif modality in model.encoders:
        enc = model.encoders[modality]
        in_channels = INPUTS.get(_dataset(config), {}).get(modality, (1,))
        in_channels = in_channels[-1] if len(in_channels) == 3 else 1
        check(c, (enc.name, enc.get('channels'), enc.get('additional_layers'), in_channels) ==
              ('lenet', _num(g[1]), _num(g[2]), _num(g[0])),
              f'model.encoders.{modality}={enc.to_dict()}, {in_channels} input channel(s)')
    elif c.kind == 'mlp':
      sizes = [int(s) for s in g[0].split('-')]
      hidden = list(model.head.hidden)
      if sizes == hidden:
        continue
      full = [shape_info().head_input, *hidden, *(t.num_classes for t in config.tasks.values())]
      check(c, sizes == full, f'the head is {"-".join(map(str, full))} (input-hidden-output)')
    elif c.kind == 'hidden_layer':
      check(c, tuple(model.head.hidden) == (_num(g[0]),), f'model.head.hidden={model.head.hidden}')
    elif c.kind == 'no_dropout':
      check(c, not model.head.get('dropout', 0), f'model.head.dropout={model.head.dropout}')
    elif c.kind == 'dropout':
      check(c, np.isclose(model.head.get('dropout', 0), _num(g[0])),
            f'model.head.dropout={model.head.dropout}')
    elif c.kind == 'image_unit_scale':
      image = config.dataset.modalities.get('image')
      if image is not None:
        check(c, (image.get('mean', 0.5), image.get('std', 0.5)) == (0.0, 1.0),
              f'dataset.modalities.image mean={image.get("mean")}, std={image.get("std")}')
    elif c.kind == 'features':
      dims = sorted(shape_info().encoder_dims.values())
      check(c, dims == sorted(int(x) for x in g), f'the encoders give {dims} features')
    elif c.kind == 'one_by_one':
      for m, enc in model.encoders.items():
        if enc.name == 'lenet':
          n = shape_info().encoder_tokens[m]
          check(c, n == 1, f'the {m} LeNet ends on a map of {n} positions')
    elif c.kind in ('batch_norm', 'no_batch_norm'):
      for m, enc in model.encoders.items():
        if enc.name == 'lenet':
          bn = enc.get('batch_norm', True)
          check(c, bn == (c.kind == 'batch_norm'), f'model.encoders.{m}.batch_norm={bn}')
    elif c.kind == 'reuses_late_fusion':
      for variant in ('avmnist', 'synthetic'):
        mine = importlib.import_module(f'configs.{name}').get_config(variant)
        ref = late_fusion.get_config(variant)
        for key in ('dataset', 'model.encoders', 'model.frontends', 'optimizer', 'batch_size',
                    'num_train_steps'):
          a, b = (_get(x, key) for x in (mine, ref))
          check(c, a == b, f'{variant}: {key} differs from late_fusion.py')
    elif c.kind == 'late_fusion_minus':
      for problem in _not_late_fusion_minus(config):
        check(c, False, problem)
    else:
      raise AssertionError(f'unchecked claim kind {c.kind}')
  return out


def _leaves(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):  # an emptied dict (every modality's entry removed) has no leaf
      out.update(_leaves(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _not_late_fusion_minus(config) -> list[str]:
  """How `config` differs from late_fusion.py with the other modalities removed, checked field
  by field (not by calling the helper the unimodal configs call): every field that names no
  removed modality is late_fusion's, every one that names one is gone, and nothing is added. A
  robustness evaluator may lose the conditions of a removed modality, or go when nothing is
  left to vary."""
  ref = late_fusion.get_config()
  removed = set(ref.model.encoders) - set(config.model.encoders)
  mine, theirs = _leaves(config.to_dict()), _leaves(ref.to_dict())
  problems = []
  for key, value in theirs.items():
    names_removed = bool(set(key.split('.')) & removed)
    robustness = key.startswith('evals.robustness.')
    if names_removed and key in mine:
      problems.append(f'{key} still names a removed modality')
    elif not names_removed and not robustness and mine.get(key, KeyError) != value:
      problems.append(f'{key}={mine.get(key, "(absent)")!r}, late_fusion.py has {value!r}')
    elif robustness and key in mine and mine[key] != value and not key.endswith('.missing'):
      problems.append(f'{key}={mine[key]!r}, late_fusion.py has {value!r}')
  problems += [f'{key} is not in late_fusion.py' for key in set(mine) - set(theirs)
               if not key.endswith('.missing')]
  return problems


def test_the_unimodal_check_catches_a_changed_or_leftover_field():
  from configs import unimodal_audio  # pylint: disable=import-outside-toplevel
  assert _not_late_fusion_minus(unimodal_audio.get_config()) == []
  changed = unimodal_audio.get_config()
  changed.optimizer.learning_rate = 0.05
  changed.dataset.modalities.image = late_fusion.get_config().dataset.modalities.image
  changed.model.head.extra = 1
  assert sorted(_not_late_fusion_minus(changed)) == [
      'dataset.modalities.image.feature still names a removed modality',
      'dataset.modalities.image.mean still names a removed modality',
      'dataset.modalities.image.std still names a removed modality',
      'model.head.extra is not in late_fusion.py',
      'optimizer.learning_rate=0.05, late_fusion.py has 0.1']


def _get(config, dotted):
  for part in dotted.split('.'):
    config = config[part]
  return config.to_dict() if hasattr(config, 'to_dict') else config


def _docstring(name: str) -> str:
  return ast.get_docstring(ast.parse((REPO / 'configs' / f'{name}.py').read_text())) or ''


def _datasheet_section() -> tuple[str, list[str]]:
  """docs/datasets.md's "Measured accuracies" section and the configs its commands run."""
  text = (REPO / 'docs' / 'datasets.md').read_text()
  start = text.index('## Measured accuracies')
  end = text.find('\n## ', start + 1)
  section = text[start:end if end > 0 else None]
  return section, sorted(set(re.findall(r'--config=configs/(\w+)\.py', section)))


# The least each text must claim, so a rewording cannot silently leave the vocabulary.
MIN_CLAIMS = {'late_fusion': 20, 'unimodal_image': 1, 'unimodal_audio': 1}


@pytest.mark.parametrize('name', CONFIGS)
def test_config_docstring_matches_resolved_config(name):
  found = claims(_docstring(name))
  config = importlib.import_module(f'configs.{name}').get_config()
  assert contradictions(found, config, name) == []
  assert len(found) >= MIN_CLAIMS.get(name, 0), [c.phrase for c in found]


def test_datasheet_recipe_matches_the_configs_it_runs():
  section, names = _datasheet_section()
  assert names == ['late_fusion', 'unimodal_audio', 'unimodal_image'], names
  found = claims(section)
  problems = []
  for name in names:
    problems += contradictions(found, importlib.import_module(f'configs.{name}').get_config(), name)
  assert problems == []
  assert len(found) >= 20, [c.phrase for c in found]


# The main job as it stood when its datasheet described a recipe it did not run: the default
# front end (32 mels, hop 128), a cosine schedule with 50 warm-up steps and clipping at 1.0.
_OLD_DATASHEET = """MultiBench's recipe as the configs give it: LeNet(1,6,3) on images,
LeNet(1,6,5) on 64-bin log-mel spectrograms (computed on the device; 256-sample window, hop 80),
MLP with one hidden layer of 100 units, plain SGD at 0.1 with weight decay 1e-4, batch 128,
1,300 steps (~3 epochs)"""


def _old_main_job():
  config = default.get_config()
  config.dataset = default.avmnist_dataset('standard')
  config.model.encoders = {'image': {'name': 'lenet', 'channels': 6, 'additional_layers': 3},
                           'audio': {'name': 'lenet', 'channels': 6, 'additional_layers': 5}}
  config.model.head = {'hidden': (100,), 'dropout': 0.0}
  config.batch_size, config.num_train_steps = 128, 1300
  config.optimizer.update(name='sgd', learning_rate=0.1, momentum=0.0, warmup_steps=50,
                          weight_decay=1e-4)
  return config


def test_the_checker_catches_the_old_contradictions():
  problems = ' '.join(contradictions(claims(_OLD_DATASHEET), _old_main_job()))
  for expected in ('n_mels=32', 'hop_length=128', "schedule='cosine'", 'warmup_steps=50',
                   'grad_clip_norm=1.0'):
    assert expected in problems, problems
  # ...and says nothing about what was right.
  assert 'learning_rate' not in problems and 'batch_size' not in problems, problems


def test_the_checker_catches_a_wrong_moving_average_decay():
  config = late_fusion.get_config()
  text = 'Evaluators see an exponential moving average of the parameters with decay {}.'
  assert contradictions(claims(text.format(config.ema_decay)), config) == []
  assert contradictions(claims(text.format(0.999)), config) == [
      f': "moving average of the parameters with decay 0.999" but ema_decay={config.ema_decay}']


def test_the_checker_catches_a_log_mel_not_standardised_per_clip():
  config = late_fusion.get_config()
  text = 'LeNet(1,6,5) on log-mel spectrograms, each clip standardised by its own mean and std.'
  assert contradictions(claims(text), config) == []
  config.model.frontends.audio.per_example_norm = False
  assert contradictions(claims(text), config) == [
      ': "each clip standardised by its own mean and std" but per_example_norm=False']


def test_the_checker_catches_a_wrong_clipping_norm():
  text = 'On AV-MNIST the gradient norm is clipped at 8.'
  assert contradictions(claims(text), tensor_fusion.get_config()) == []
  assert contradictions(claims(text), late_fusion.get_config()) == [
      ': "gradient norm is clipped at 8" but optimizer.grad_clip_norm=0.0']


def test_the_checker_skips_paragraphs_about_another_system():
  text = 'Plain SGD, batch 128.\n\nDepartures from MultiBench: it trains at batch 40.'
  assert [c.groups for c in claims(text) if c.kind == 'batch_size'] == [('128',)]


# MultiBench's LeNet(in, c, n) (unimodals/common_models.py): bias-free convolutions
# 5x5 in->c and 3x3 c*2^i -> c*2^(i+1) for i < n, each with a BatchNorm2d (weight and bias).
def _multibench_lenet_params(in_channels, c, n, batch_norm=True):
  """MultiBench's convolutions have no bias and a BatchNorm (scale, bias) each; without
  BatchNorm a convolution has its bias instead."""
  widths = [in_channels] + [c * 2 ** i for i in range(n + 1)]
  kernels = [5] + [3] * n
  convs = sum(k * k * a * b for k, a, b in zip(kernels, widths[:-1], widths[1:]))
  return convs + (2 if batch_norm else 1) * sum(widths[1:])


def _conv_maps(model, x):
  _, inter = jax.eval_shape(lambda x: model.apply(
      model.init(jax.random.key(0), x), x, capture_intermediates=True,
      mutable=['intermediates']), x)
  convs = sorted((k for k in inter['intermediates'] if k.startswith('Conv_')),
                 key=lambda k: int(k.split('_')[1]))
  return [inter['intermediates'][k]['__call__'][0].shape[1:-1] for k in convs]


@pytest.mark.parametrize('additional_layers, shape, maps, params', [
    # LeNet(1,6,3) on a 28x28 image: 28-14-7-3-1.
    (3, (28, 28, 1), [(28, 28), (14, 14), (7, 7), (3, 3)], 13_938),
    # LeNet(1,6,5) on the 97x64 log-mel: 97x64-48x32-24x16-12x8-6x4-3x2-1x1.
    (5, (97, 64), [(97, 64), (48, 32), (24, 16), (12, 8), (6, 4), (3, 2)], 221_874),
])
def test_lenet_pools_after_every_conv_and_matches_multibench(additional_layers, shape, maps,
                                                              params):
  model = lenet(channels=6, additional_layers=additional_layers)
  x = jnp.zeros((2, *shape))
  # Each convolution sees the previous one's map halved (floor): a pool after every conv.
  assert _conv_maps(model, x) == maps
  enc = jax.eval_shape(lambda x: model.apply(model.init(jax.random.key(0), x), x), x)
  channels = 6 * 2 ** additional_layers
  assert enc.pooled.shape == (2, channels)          # ... and after the last: a 1x1 map
  assert enc.tokens.shape == (2, 1, channels)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables['params']))
  assert count == params == _multibench_lenet_params(1, 6, additional_layers)
  assert not any('bias' in jax.tree_util.keystr(path) and 'Conv' in jax.tree_util.keystr(path)
                 for path, _ in jax.tree_util.tree_leaves_with_path(variables['params']))


def test_lenet_keeps_a_one_wide_side_instead_of_emptying_it():
  # 61x32 reaches 1x1 after five pools; the sixth leaves it at 1x1 (PyTorch would raise).
  model = lenet(channels=6, additional_layers=5)
  x = jnp.zeros((2, 61, 32))
  assert _conv_maps(model, x)[-1] == (1, 1)
  enc = jax.eval_shape(lambda x: model.apply(model.init(jax.random.key(0), x), x), x)
  assert enc.pooled.shape == (2, 192)


def test_multibench_variant_is_multibenchs_recipe_on_its_112_by_112_spectrograms():
  """configs/late_fusion.py:multibench: MultiBench's model with its BatchNorms, on the 112x112
  spectrogram (112-56-28-14-7-3-1: 192 features, as the main job's log-mel gives), at its
  batch 40 for 3 epochs, validated every epoch, SGD 0.1 with weight decay 1e-4 on every
  parameter, the gradient norm clipped at 8, no moving average."""
  config = late_fusion.get_config('multibench')
  shapes = _shapes(config)
  assert shapes.encoder_dims == {'image': 48, 'audio': 192} and shapes.head_input == 240
  assert all(enc.batch_norm for enc in config.model.encoders.values())
  assert (config.batch_size, config.num_train_steps, config.evals.validation.every_steps) == (
      40, 3 * 1375, 1375)
  opt = config.optimizer
  assert (opt.name, opt.learning_rate, opt.weight_decay, opt.weight_decay_on, opt.momentum,
          opt.grad_clip_norm, opt.schedule, opt.warmup_steps) == (
              'sgd', 0.1, 1e-4, 'all', 0.0, 8.0, 'constant', 0)
  assert config.ema_decay == 0.0 and config.select_best == 'validation/accuracy'
  assert config.model.head.to_dict() == late_fusion.get_config().model.head.to_dict()


def test_main_job_parameter_counts():
  config = late_fusion.get_config()
  shapes = _shapes(config)
  assert shapes.encoder_dims == {'image': 48, 'audio': 192}
  assert shapes.head_input == 240
  variables = jax.eval_shape(
      build_model(config).init, jax.random.key(0),
      {m: jnp.zeros((1, *s)) for m, s in INPUTS['avmnist'].items()},
      {m: jnp.ones((1,), bool) for m in INPUTS['avmnist']})
  total = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables['params']))
  head = 240 * 100 + 100 + 100 * 10 + 10
  assert not any(enc.get('batch_norm', True) for enc in config.model.encoders.values())
  assert total == (_multibench_lenet_params(1, 6, 3, batch_norm=False)
                   + _multibench_lenet_params(1, 6, 5, batch_norm=False) + head)


@pytest.mark.slow
def test_lenet_input_standardisation_is_applied_before_the_first_convolution():
  x = jax.random.normal(jax.random.key(1), (2, 28, 28)) * 3.0 - 5.0
  plain, standardised = lenet(batch_norm=False), lenet(batch_norm=False, input_mean=-5.0,
                                                       input_std=3.0)
  variables = plain.init(jax.random.key(0), x)
  np.testing.assert_allclose(standardised.apply(variables, x).pooled,
                             plain.apply(variables, (x + 5.0) / 3.0).pooled, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_main_job_audio_encoder_sees_each_clip_standardised():
  """configs/late_fusion.py standardises each clip's log-mel by its own mean and std: over
  training examples (8 batches of 128 in the training order) the clips' loudness, which the
  per-clip means measure, varies far more than the values inside a clip, and the encoder sees
  none of it."""
  from mmjax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  from mmjax.models.frontend import LogMel  # pylint: disable=import-outside-toplevel
  config = late_fusion.get_config()
  audio = config.model.encoders.audio
  assert (audio.get('input_mean', 0.0), audio.get('input_std', 1.0)) == (0.0, 1.0)
  settings = {k: v for k, v in config.model.frontends.audio.items() if k != 'name'}
  raw = jax.jit(LogMel(**{**settings, 'per_example_norm': False}).apply)
  seen = jax.jit(LogMel(**settings).apply)
  it = input_pipeline.train_iterator(config)
  waves = [next(it)['inputs']['audio'] for _ in range(8)]
  raw_values = np.concatenate([np.asarray(raw({}, w)) for w in waves])
  values = np.concatenate([np.asarray(seen({}, w)) for w in waves])
  clip_means, clip_stds = raw_values.mean(axis=(1, 2)), raw_values.std(axis=(1, 2))
  assert clip_means.std() > 2 * clip_stds.mean(), (clip_means.std(), clip_stds.mean())
  np.testing.assert_allclose(values.mean(axis=(1, 2)), 0.0, atol=1e-3)
  np.testing.assert_allclose(values.std(axis=(1, 2)), 1.0, atol=1e-2)


def test_torch_head_init_is_pytorch_linear_default():
  """model.head.param_init='torch': every Dense of the head has weights and biases in
  +-1/sqrt(fan_in), spread uniformly (std bound/sqrt(3)); 'flax' keeps zero biases."""
  from mmjax.models.heads import TaskHeads  # pylint: disable=import-outside-toplevel
  x = np.zeros((2, 240), np.float32)
  params = TaskHeads({'label': 10}, hidden=(100,), dropout=0.0, param_init='torch').init(
      jax.random.key(0), x)['params']['label']
  for name, fan_in in (('Dense_0', 240), ('Dense_1', 100)):
    bound = fan_in ** -0.5
    for leaf in ('kernel', 'bias'):
      values = np.asarray(params[name][leaf])
      assert np.abs(values).max() <= bound
      assert abs(values.std() - bound / np.sqrt(3)) < 0.15 * bound, (name, leaf)
  flax_params = TaskHeads({'label': 10}, hidden=(100,), param_init='flax').init(
      jax.random.key(0), x)['params']['label']
  assert not np.asarray(flax_params['Dense_0']['bias']).any()
  with pytest.raises(UserError,
                     match="model.head.param_init='pytorch'; valid values: flax, torch"):
    TaskHeads({'label': 10}, hidden=(100,), param_init='pytorch').init(jax.random.key(0), x)


def test_decision_fusion_heads_take_the_shared_heads_sizes_and_flaxs_initialisation():
  """configs/decision_fusion.py's docstring: each per-modality head has the shared head's hidden
  sizes and dropout, while the shared head's `param_init` ('torch' in the main job) does not
  reach it."""
  from configs import decision_fusion  # pylint: disable=import-outside-toplevel
  from mmjax.models.fusion.decision import DecisionFusion  # pylint: disable=import-outside-toplevel
  config = decision_fusion.get_config()
  assert (config.model.fusion.hidden, config.model.fusion.dropout) == (
      config.model.head.hidden, config.model.head.dropout)
  assert config.model.head.param_init == 'torch' and 'param_init' not in config.model.fusion
  assert 'param_init' not in DecisionFusion.__dataclass_fields__


def test_seed_config_sets_its_architecture_whatever_the_defaults(monkeypatch):
  """configs/seed.py's docstring: front end, encoders, fusion and head (its initialisation
  included) are the seed's own, so a change of configs/default.py's architecture leaves them."""
  from configs import seed  # pylint: disable=import-outside-toplevel
  before = seed.get_config().model.to_dict()
  original = default.get_config

  def moved_on():
    config = original()
    config.model.frontends = {'audio': default.logmel(n_mels=80)}
    config.model.head = {'hidden': (7,), 'dropout': 0.1, 'param_init': 'torch'}
    config.model.fusion = {'name': 'gated_fusion'}
    config.model.encoders = {'image': {'name': 'lenet'}}
    return config

  monkeypatch.setattr(default, 'get_config', moved_on)
  assert seed.get_config().model.to_dict() == before
