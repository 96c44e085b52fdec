"""mmjax's trainer loop against the same model in plain Keras 3, alternating in one process.

  python -m experiments.keras_compare [--rounds=2] [--steps=50] [--warmup=5] [--data=random]
                                      [--noprecompute_frontends] [--out=FILE.json]

Whether mmjax's loop costs throughput against a stock framework's on the main job
(configs/late_fusion.py: AV-MNIST late fusion, batch 128). Each round measures mmjax
(experiments.benchmark.measure: the trainer loop, and the train step alone), then Keras: the same
two LeNets without BatchNorm, the same MLP 240-100-10, initialisation, loss and optimizer (plain
SGD, weight decay on kernels, the parameters' moving average), trained by `model.fit` on a tf.data
pipeline of in-memory arrays, compiled as Keras compiles by default (jit_compile='auto': XLA where
TensorFlow sees a GPU, its own graph and kernels on a CPU-only machine). Alternating rounds share
the machine's load between the two sides. Keras's model is built and compiled once; mmjax's state
and steps anew in each round (benchmark.measure), outside the timed steps.

Keras is given the log-mel spectrograms precomputed on the host (by mmjax's own front end, once),
so its step has no STFT; mmjax is run with `precompute_frontends=True`, its log-mel computed once
per recording and its step reading features too (`--noprecompute_frontends`: from the waveform in
every step, as the main job does by default, 3-5% slower; docs/performance.md). Both compute per-step
metrics (accuracy; mmjax also gradient norms and a finiteness check). Keras's moving average
replaces the weights at the end of every `fit` (mmjax keeps it beside them): the same per-step
work, another training trajectory. The two parameter counts must match or the run stops.

TensorFlow is not a dependency of mmjax: without it (or Keras 3) one line says the Keras half is
skipped and how to get it, and the mmjax half runs alone. `--data=random` trains both sides on
random arrays (mmjax's benchmark inputs) instead of AV-MNIST; mmjax's benchmark then has no input
pipeline, so it reports the step alone, and the ratio is taken from that.
"""

import importlib
import json
import os
import pathlib
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from configs import late_fusion
from experiments import benchmark
from mmjax.data import input_pipeline
from mmjax.errors import UserError
from mmjax.models.base import modality_order
from mmjax.models.model import build_frontend

CONFIG = 'configs/late_fusion.py'
RANDOM_INPUTS = {'image': {'shape': (28, 28, 1)}, 'audio': {'shape': (8000,)}}
HOST_BATCHES = 8  # distinct batches Keras cycles through


def import_keras():
  """(keras, tensorflow, None), or (None, None, why) where they cannot be used."""
  os.environ['KERAS_BACKEND'] = 'tensorflow'
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  # By name: neither is a dependency of mmjax, and setup.py declares every module its scripts
  # import (tests/test_packaging.py).
  try:
    tf = importlib.import_module('tensorflow')
    keras = importlib.import_module('keras')
  except Exception as e:  # pylint: disable=broad-except  (a broken install is a skip too)
    return None, None, f'{type(e).__name__}: {e}'
  if not keras.__version__.startswith('3.') or keras.backend.backend() != 'tensorflow':
    return None, None, f'Keras {keras.__version__} with backend {keras.backend.backend()!r}'
  # JAX holds most of a GPU's memory already: TensorFlow takes only what it uses.
  for gpu in tf.config.list_physical_devices('GPU'):
    tf.config.experimental.set_memory_growth(gpu, True)
  return keras, tf, None


def get_config(data: str):
  config = late_fusion.get_config()
  config.precompute_frontends = flags.FLAGS.precompute_frontends
  if data == 'random':
    config.benchmark_inputs = RANDOM_INPUTS
  return config


def host_features(config, data: str, num_batches: int):
  """({modality: array}, labels): `num_batches` training batches as the encoders see them, the
  audio through mmjax's front end, with a channel axis on every one."""
  batch_size = config.batch_size
  if data == 'random':
    batches = [benchmark.random_batch(config, batch_size, seed=i) for i in range(num_batches)]
  else:
    it = input_pipeline.train_iterator(config)
    try:
      batches = [next(it) for _ in range(num_batches)]
    finally:
      it.close()
  (task,) = config.tasks
  features = {}
  for m in modality_order(config.model):
    x = np.concatenate([np.asarray(b['inputs'][m]) for b in batches])
    frontend = build_frontend(config.model, m)
    if frontend is not None:
      apply = jax.jit(lambda v, f=frontend: f.apply({}, v))
      x = np.concatenate([np.asarray(apply(x[i:i + batch_size]))
                          for i in range(0, len(x), batch_size)])
    features[m] = x[..., None] if x.ndim == 3 else x
  labels = np.concatenate([np.asarray(b['labels'][task]) for b in batches])
  return features, labels


def keras_model(keras, config, shapes: dict):
  """The late-fusion model of `config` in Keras: per modality a LeNet (mmjax.models.encoders.conv
  .lenet: 'SAME' convolutions with biases, ReLU, PyTorch's floor-mode 2x2 max-pool that leaves a
  side of 1 alone), flattened, concatenated in mmjax's modality order, into the MLP head."""
  layers, inits = keras.layers, keras.initializers
  model_cfg = config.model
  if model_cfg.fusion.name != 'late_fusion':
    raise UserError(f'Keras model: fusion {model_cfg.fusion.name!r}, not late_fusion')
  inputs, pooled = {}, []
  for m in modality_order(model_cfg):
    enc = model_cfg.encoders[m]
    if enc.name != 'lenet' or enc.get('batch_norm', True):
      raise UserError(f'Keras model: encoder {m} is not a LeNet without BatchNorm')
    x = inputs[m] = keras.Input(shapes[m], name=m)
    for i in range(enc.additional_layers + 1):
      x = layers.Conv2D(enc.channels * 2 ** i, 5 if i == 0 else 3, padding='same',
                        activation='relu', name=f'{m}_conv{i}',
                        kernel_initializer=inits.VarianceScaling(2.0, 'fan_in', 'uniform'))(x)
      h, w = x.shape[1:3]
      x = layers.MaxPooling2D((2 if h > 1 else 1, 2 if w > 1 else 1), name=f'{m}_pool{i}')(x)
    pooled.append(layers.Flatten(name=f'{m}_flatten')(x))
  x = layers.Concatenate(name='fusion')(pooled)
  head = model_cfg.head
  if head.get('dropout', 0.0) or head.get('param_init') != 'torch':
    raise UserError("Keras model: the head needs dropout 0 and param_init 'torch'")
  (task,) = config.tasks.values()
  sizes = (*head.hidden, task.num_classes)
  for i, size in enumerate(sizes):
    bound = x.shape[-1] ** -0.5  # PyTorch's nn.Linear default
    x = layers.Dense(size, activation='relu' if i < len(sizes) - 1 else None, name=f'dense{i}',
                     kernel_initializer=inits.VarianceScaling(1 / 3, 'fan_in', 'uniform'),
                     bias_initializer=inits.RandomUniform(-bound, bound))(x)
  return keras.Model(inputs, x)


def keras_optimizer(keras, config):
  """config.optimizer's plain SGD; weight decay on kernels only, as mmjax.optim (with a constant
  learning rate and no momentum, Keras's decoupled decay is the same update)."""
  opt = config.optimizer
  if (opt.name, opt.schedule, opt.get('warmup_steps', 0), opt.get('grad_clip_norm', 0.0),
      opt.get('momentum', 0.0)) != ('sgd', 'constant', 0, 0.0, 0.0):
    raise UserError('Keras model: config.optimizer is not constant-rate plain SGD')
  ema = float(config.get('ema_decay', 0.0))
  optimizer = keras.optimizers.SGD(learning_rate=opt.learning_rate,
                                   weight_decay=opt.weight_decay or None, use_ema=ema > 0,
                                   ema_momentum=ema or 0.99)
  optimizer.exclude_from_weight_decay(var_names=['bias'])
  return optimizer


class KerasHalf:
  """The Keras model compiled once; `measure` trains it on the host batches, over and over."""

  def __init__(self, keras, tf, config, features, labels):
    self.keras, self.tf = keras, tf
    self.batch_size = config.batch_size
    self.model = keras_model(keras, config, {m: x.shape[1:] for m, x in features.items()})
    self.model.compile(
        optimizer=keras_optimizer(keras, config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])
    self.dataset = (tf.data.Dataset.from_tensor_slices((features, labels))
                    .batch(self.batch_size, drop_remainder=True).repeat()
                    .prefetch(tf.data.AUTOTUNE))
    self.num_params = int(self.model.count_params())

  def fit(self, num_steps: int) -> float:
    start = time.perf_counter()
    self.model.fit(self.dataset, epochs=1, steps_per_epoch=num_steps, shuffle=False, verbose=0)
    return time.perf_counter() - start

  def measure(self, num_steps: int, warmup: int) -> float:
    """Examples per second of `fit` over `num_steps` steps, after `warmup` (at least one: the
    first call compiles)."""
    self.fit(max(warmup, 1))
    return num_steps * self.batch_size / self.fit(num_steps)

  def info(self) -> dict:
    gpus = self.tf.config.list_physical_devices('GPU')
    return {'keras_version': self.keras.__version__, 'tensorflow_version': self.tf.__version__,
            'device': f'{len(gpus)}x GPU' if gpus else 'CPU',
            'jit_compile': bool(self.model.jit_compile), 'num_params': self.num_params}


def _fmt(x, spec=',.0f'):
  return '–' if x is None else format(x, spec)


def _ratio(a, b):
  return a / b if a and b else None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  args = flags.FLAGS
  if args.rounds < 1 or args.steps < 1:
    raise app.UsageError('--rounds and --steps must be at least 1')
  keras, tf, why = import_keras()
  if keras is None:
    print(f'Keras half skipped: cannot use TensorFlow with Keras 3 ({why}); to compare, '
          '`pip install tensorflow` (it brings Keras 3) into a separate environment with mmjax',
          flush=True)
  config = get_config(args.data)
  try:
    keras_half = None
    if keras is not None:
      features, labels = host_features(config, args.data, HOST_BATCHES)
      keras_half = KerasHalf(keras, tf, config, features, labels)
    rounds, mmjax_info = [], None
    for r in range(1, args.rounds + 1):
      result = benchmark.measure(config, num_steps=args.steps, warmup=args.warmup, eval_steps=1,
                                 input_batches=1, data=args.data)
      if keras_half and keras_half.num_params != result['num_params']:
        sys.exit(f'keras_compare: error: Keras has {keras_half.num_params:,} parameters, '
                 f'mmjax {result["num_params"]:,}: not the same model')
      keras_eps = keras_half.measure(args.steps, args.warmup) if keras_half else None
      loop, step = result['loop_examples_per_sec'], result['examples_per_sec']
      rounds.append({'round': r, 'mmjax_loop_examples_per_sec': loop,
                     'mmjax_step_examples_per_sec': step, 'keras_examples_per_sec': keras_eps,
                     'loop_to_keras': _ratio(loop, keras_eps),
                     'step_to_keras': _ratio(step, keras_eps),
                     'load_average': os.getloadavg()[0]})
      mmjax_info = {k: result[k] for k in ('platform', 'device_kind', 'device_count',
                                           'jax_version', 'data', 'num_params',
                                           'flops_per_example')}
      print(f'round {r}: mmjax loop {_fmt(loop)}, step alone {_fmt(step)} examples/s' + (
          f'; Keras {_fmt(keras_eps)} examples/s' if keras_half else ''), flush=True)
  except UserError as e:  # missing raw data: one line, as the trainer
    sys.exit(f'keras_compare: error: {e}')

  keras_info = keras_half.info() if keras_half else None
  print(f'\n{CONFIG[len("configs/"):]} ({mmjax_info["data"]}, batch {config.batch_size}, '
        f'{mmjax_info["num_params"]:,} parameters{" on both sides" if keras_half else ""}): '
        f'mmjax on {mmjax_info["device_count"]}x {mmjax_info["device_kind"]} '
        f'(JAX {mmjax_info["jax_version"]})' + (
            f', Keras {keras_info["keras_version"]} on TensorFlow '
            f'{keras_info["tensorflow_version"]} ({keras_info["device"]}, jit_compile='
            f'{keras_info["jit_compile"]})' if keras_info else ''))
  print(f'{"round":>5}  {"mmjax loop ex/s":>15}  {"mmjax step ex/s":>15}  {"Keras ex/s":>10}  '
        f'{"loop/Keras":>10}  {"step/Keras":>10}')
  for row in rounds:
    print(f'{row["round"]:>5}  {_fmt(row["mmjax_loop_examples_per_sec"]):>15}  '
          f'{_fmt(row["mmjax_step_examples_per_sec"]):>15}  '
          f'{_fmt(row["keras_examples_per_sec"]):>10}  {_fmt(row["loop_to_keras"], ".2f"):>10}  '
          f'{_fmt(row["step_to_keras"], ".2f"):>10}')
  key = 'loop_to_keras' if rounds[0]['loop_to_keras'] else 'step_to_keras'
  ratios = [row[key] for row in rounds if row[key]]
  median = statistics.median(ratios) if ratios else None
  if median:
    print(f'median {key.replace("_to_keras", "")}/Keras over {len(ratios)} rounds: {median:.2f}')

  if args.out:
    out = {'config': CONFIG, 'data': mmjax_info['data'], 'batch_size': config.batch_size,
           'steps': args.steps, 'warmup': args.warmup,
           # random batches are waveforms: the front end runs in the step whatever the flag
           'precompute_frontends': config.precompute_frontends and args.data == 'pipeline',
           'mmjax': mmjax_info,
           'keras': keras_info or {'skipped': why}, 'rounds': rounds, 'median_ratio': median,
           'median_ratio_of': key if median else None}
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + '\n', encoding='utf-8')


if __name__ == '__main__':
  flags.DEFINE_integer('rounds', 2, 'Rounds, each mmjax then Keras.')
  flags.DEFINE_integer('steps', 50, 'Timed train steps of each side in each round.')
  flags.DEFINE_integer('warmup', 5, 'Untimed train steps before them.')
  flags.DEFINE_enum('data', 'pipeline', ('pipeline', 'random'),
                    'AV-MNIST through the input pipeline, or random arrays of its shapes.')
  flags.DEFINE_bool('precompute_frontends', True,
                    "mmjax's log-mel computed once per recording, as Keras's is (config field).")
  flags.DEFINE_string('out', None, 'Write the figures here as JSON.')
  app.run(main)
