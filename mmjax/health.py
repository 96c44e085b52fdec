"""Run health: whether a multimodal run actually uses each of its modalities, and whether it
trained at all, read from its robustness evaluator's accuracies.

A mean over seeds hides a run whose audio branch never learned: it scores what the image alone
scores, and removing the audio or drowning it in noise changes nothing. The rules (in accuracy
points; chance is 1 / number of classes, or where the pid evaluator measured it on the data, the
most frequent label's share, which the sweeps' aggregator prefers):

- **inert in modality m**: giving each example another example's m moves its accuracy by less
  than `NOISE_MARGIN` (condition `swapped=<m>`), or the strongest noise on m does (conditions
  `noise=<m>,...`). A run evaluated without `swapped=<m>` is judged instead by removal: with
  every other modality removed it is within `CHANCE_MARGIN` of chance (`missing=<other>`, two
  modalities). Removal misjudges a fusion that multiplies its modalities' features (tensor,
  low-rank, attention): with one modality zeroed it may fall to chance while using both, which
  is why the swap, whose inputs stay ones the model trained on, decides where it was measured;
- **diverged**: its loss went non-finite, or with every modality present it ended within
  `CHANCE_MARGIN` of chance.

A run is healthy when it is neither. The trainer warns at the end of a run whose robustness
evaluator shows either; the sweep aggregator writes the flags into results.csv.
"""

import dataclasses
import re

CHANCE_MARGIN = 0.05   # within 5 points of chance counts as chance
NOISE_MARGIN = 0.005   # noise that moves accuracy by under half a point is noise ignored
_NOISE = re.compile(r'^noise=(?P<modality>\w+),(?P<kind>\w+)=(?P<level>-?[\d.e+]+)$')


@dataclasses.dataclass(frozen=True)
class Health:
  inert: tuple[str, ...] = ()     # modalities the run does not use
  diverged: bool = False
  reasons: tuple[str, ...] = ()   # one phrase per flag, for a warning line

  @property
  def healthy(self) -> bool:
    return not self.inert and not self.diverged


def strongest_noise(conditions, modality: str) -> str | None:
  """The condition with the most noise on `modality`: the lowest SNR (`snr_db`) or the largest
  standard deviation (`std`); None without one."""
  levels = []
  for condition in conditions:
    match = _NOISE.match(condition)
    if match and match['modality'] == modality:
      level = float(match['level'])
      levels.append((-level if match['kind'] == 'snr_db' else level, condition))
  return max(levels)[1] if levels else None


def check(accuracy: dict, modalities, chance: float, nonfinite: bool = False) -> Health:
  """Health from `accuracy` = {condition: accuracy in [0, 1]} ('all', 'missing=<m>',
  'swapped=<m>', 'noise=<m>,<kind>=<level>'; the robustness evaluator's conditions) of a run
  over `modalities` whose chance level is `chance`. Conditions it lacks are not judged."""
  inert, reasons, diverged = [], [], bool(nonfinite)
  if nonfinite:
    reasons.append('loss went non-finite')
  full = accuracy.get('all')
  if full is not None and full <= chance + CHANCE_MARGIN:
    diverged = True
    reasons.append(f'accuracy {100 * full:.1f}% with every modality (chance {100 * chance:.0f}%)')
  modalities = tuple(modalities)
  for m in modalities if len(modalities) > 1 else ():
    others = [o for o in modalities if o != m]
    swapped = accuracy.get(f'swapped={m}')
    alone = accuracy.get(f'missing={others[0]}') if len(others) == 1 else None
    if swapped is not None and full is not None:
      if abs(full - swapped) < NOISE_MARGIN:
        inert.append(m)
        reasons.append(f'{m} branch inert: giving each example another example\'s {m} moves '
                       f'accuracy by {100 * abs(full - swapped):.2f} point')
        continue
    elif alone is not None and alone <= chance + CHANCE_MARGIN:
      inert.append(m)
      reasons.append(f'{m} branch inert: accuracy with the {others[0]} removed '
                     f'{100 * alone:.1f}% (chance {100 * chance:.0f}%)')
      continue
    noisiest = strongest_noise(accuracy, m)
    if noisiest is not None and full is not None and abs(full - accuracy[noisiest]) < NOISE_MARGIN:
      inert.append(m)
      reasons.append(f'{m} branch inert: {noisiest.split(",", 1)[1]} noise on the {m} moves '
                     f'accuracy by {100 * abs(full - accuracy[noisiest]):.2f} point')
  return Health(tuple(inert), diverged, tuple(reasons))


def chance_level(num_classes: int) -> float:
  return 1.0 / num_classes
