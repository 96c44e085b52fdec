"""Modality imbalance: OGM-GE, `config.objective.name = 'ogm_ge'`.

On-the-fly gradient modulation with generalisation enhancement (Peng, Wei, Deng, Wang & Hu, CVPR
2022: "Balanced Multimodal Learning via On-the-fly Gradient Modulation"). A fused model of two
modalities is trained on the classification loss as usual, but at every step the gradient of the
dominant modality's encoder is scaled down by how much that modality dominates the batch:

  s_u = Σ_i softmax(out_u(x_i))[y_i]     (the batch's score of modality u's branch)
  ρ_u = s_u / s_v                       (the discrepancy ratio, v the other modality)
  k_u = 1 - tanh(α · ρ_u)  if ρ_u > 1,  else 1            (the paper's Eq. 10)
  g_u ← k_u · g_u  (+ GE: + N(0, std(g_u)²) elementwise, the unmodulated gradient's spread)

for every weight (kernel) of modality u's encoder; biases and normalisation parameters (1-D)
keep their gradient, as in the official code, which modulates the 4-D convolution kernels of its
ResNet encoders. With `modulation='ogm_ge'` Gaussian noise with the standard deviation of each
kernel's gradient before modulation is added to it (GE), as the official code does
(`grad = grad * coeff + normal(0, grad.std())`, the std read before the assignment);
`modulation='ogm'` scales only. The official default modulates epochs 0 to 50 of 100: set the
window with start_step and end_step.

The branch output of modality u is the fused model's head with only u present, less half its output
with neither: out_u = f(u only) - f(none) / 2. For a linear head over concatenated features,
f(x) = W_a a + W_v v + b, this is W_u u + b/2, the official code's out_u; in general the two
branches then add up to the fused output whenever f is additive.

config.objective: name='ogm_ge', alpha, modulation ('ogm_ge' | 'ogm'), start_step, end_step
(modulation from start_step up to, not including, end_step; 0: to the end), plus the
classification objective's fields.
Metrics, each modality u: `ogm/<u>/score` (mean softmax probability of the true class through
its branch) and `ogm/<u>/accuracy` (the branch's accuracy), on every split; in training also
`ogm/<u>/coeff` (k_u, its mean over the logged steps).
"""

import jax
import jax.numpy as jnp

from mmjax.errors import UserError
from mmjax.objectives.base import OBJECTIVES, apply
from mmjax.objectives.classification import Classification

MODULATIONS = ('ogm_ge', 'ogm')


def coefficients(score_a, score_b, alpha):
  """(k_a, k_b) from the two branches' batch scores (Eq. 10 of the paper)."""
  ratio_a = score_a / jnp.maximum(score_b, 1e-12)
  ratio_b = score_b / jnp.maximum(score_a, 1e-12)
  k = lambda ratio: jnp.where(ratio > 1, 1 - jnp.tanh(alpha * ratio), 1.0)
  return k(ratio_a), k(ratio_b)


def _forward(module, inputs, present, train):
  """The fused logits and, per modality, its branch's: f(u only) - f(none) / 2."""
  encodings = module.encode(inputs, train)
  modalities = module.modalities
  head = lambda mask: module.fused_logits(encodings, mask, train)
  mask = jnp.stack([present[m] for m in modalities], axis=1)
  fused = head(mask)
  none = head(jnp.zeros_like(mask))
  branch = {}
  for i, m in enumerate(modalities):
    only = head(mask & (jnp.arange(len(modalities)) == i)[None, :])
    branch[m] = {t: only[t] - 0.5 * none[t] for t in only}
  return fused, branch


@OBJECTIVES.register('ogm_ge')
class OGMGE(Classification):
  """See the module docstring."""

  def __init__(self, config, model):
    super().__init__(config, model)
    cfg = config.get('objective') or {}
    self.modalities = model.modalities
    if len(self.modalities) != 2:
      raise UserError(f'objective.name=ogm_ge balances two modalities; the model has '
                      f'{list(self.modalities)} (model.encoders)')
    if len(self.tasks) != 1:
      raise UserError(f'objective.name=ogm_ge scores one task; the config has {self.tasks}')
    if model.head_names:
      raise UserError('objective.name=ogm_ge reads the fused head; set model.unimodal_heads={}')
    self.alpha = float(cfg.get('alpha', 0.1))
    self.modulation = cfg.get('modulation', 'ogm_ge')
    if self.modulation not in MODULATIONS:
      raise UserError(f'objective.modulation={self.modulation!r}; valid values: '
                      f'{", ".join(MODULATIONS)}')
    self.start_step = int(cfg.get('start_step', 0))
    self.end_step = int(cfg.get('end_step', 0))
    if self.alpha < 0 or self.start_step < 0 or self.end_step < 0:
      raise UserError(f'objective: alpha={self.alpha}, start_step={self.start_step} and '
                      f'end_step={self.end_step} must be >= 0')

  def apply_model(self, variables, batch, *, train: bool, rngs=None):
    (fused, branch), batch_stats = apply(self.model, variables, batch['inputs'], batch['present'],
                                         train=train, rngs=rngs, method=_forward)
    return {'fused': fused, 'branch': branch}, batch_stats

  def __call__(self, params, outputs, batch):
    loss, sums = super().__call__(params, outputs['fused'], batch)
    mask = batch['mask'].astype(jnp.float32)
    task = self.tasks[0]
    labels = batch['labels'][task]
    for m in self.modalities:
      logits = outputs['branch'][m][task].astype(jnp.float32)
      p_true = jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], axis=1)[:, 0]
      sums[f'ogm/{m}/score'] = jax.lax.stop_gradient(p_true * mask).sum()
      sums[f'ogm/{m}/accuracy'] = ((jnp.argmax(logits, -1) == labels) * mask).sum()
    return loss, sums

  def transform_gradients(self, grads, sums, step, key):
    """Scales each modality's encoder kernels' gradients by k_u (and adds GE noise)."""
    a, b = self.modalities
    k = dict(zip((a, b), coefficients(sums[f'ogm/{a}/score'], sums[f'ogm/{b}/score'],
                                      self.alpha)))
    active = step >= self.start_step
    if self.end_step:
      active &= step < self.end_step
    k = {m: jnp.where(active, v, 1.0) for m, v in k.items()}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(grads['model'])
    out = []
    for i, (path, g) in enumerate(leaves):
      top = str(getattr(path[0], 'key', path[0]))
      m = top.removeprefix('encoders_') if top.startswith('encoders_') else None
      if m in k and g.ndim >= 2:
        spread = jnp.std(g) + 1e-8  # of the gradient before modulation, as the official code
        g = k[m] * g
        if self.modulation == 'ogm_ge':
          noise = jax.random.normal(jax.random.fold_in(key, i), g.shape, jnp.float32)
          g = g + jnp.where(active, spread, 0.0) * noise.astype(g.dtype)
      out.append(g)
    grads = {**grads, 'model': jax.tree_util.tree_unflatten(treedef, out)}
    sums = {**sums, **{f'ogm/{m}/coeff': v * sums['count'] for m, v in k.items()}}
    return grads, sums
