"""Cross-modal knowledge distillation on AV-MNIST: the audio-visual late-fusion model (the main job,
`late_fusion.py`) teaches an audio-only student (mmjax.objectives.distill).

The student is `unimodal_audio.py`'s model, recipe and budget (LeNet(1,6,5) on 97x64 log-mel
spectrograms, an MLP head, plain SGD at lr 0.1, batch 128, 1,300 steps), so the two compare at the
same budget. It minimises 0.5 · label cross-entropy + 0.5 · T²·KL to the teacher, T = 1: the
gradient on the student's logits is then p − (y + p_teacher)/2, bounded as the label loss's is, so
the unclipped from-scratch recipe carries over. The dataset keeps both modalities for the teacher.

The teacher is a workdir, `config.distill.teacher`, by default `runs/late_fusion` (where the
README's main-job command puts it, relative to the working directory). A missing teacher, one
without a checkpoint, or one trained on other tasks is an error before training.

Variants: `:synthetic` (set `distill.teacher` to a run of `late_fusion.py:synthetic` restricted to
image and audio).
"""

from configs import late_fusion


def get_config(arg: str = 'avmnist'):
  if arg not in ('avmnist', 'synthetic'):
    raise ValueError(f'unknown variant {arg!r} of distill_audio.py; valid: avmnist, synthetic')
  config = late_fusion.get_config(arg)
  # The student reads the audio; the dataset keeps the image for the teacher.
  for group in (config.model.encoders, config.model.frontends):
    for modality in [m for m in group if m != 'audio']:
      del group[modality]
  for modality in [m for m in config.dataset.modalities if m not in ('image', 'audio')]:
    del config.dataset.modalities[modality]
  config.objective.name = 'distill'
  config.distill = {
      'teacher': '' if arg == 'synthetic' else 'runs/late_fusion',
      'temperature': 1.0,
      'kd_weight': 0.5,
      'label_weight': 0.5,
  }
  return config
