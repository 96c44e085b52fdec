"""Audio-only baseline: the late_fusion recipe with every other modality removed."""

from configs import default
from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  return default.keep_modalities(late_fusion.get_config(arg), ['audio'])
