"""Audio front ends, run on the device inside the model: waveform [B, T] → a log-mel or a
spectrogram [B, frames, bins]. A front end is `fixed` when training sees a pure function of the
waveform: then `precompute_frontends` may compute it once per stored recording instead
(mmjax.training.features).

Computed in JAX so changing n_mels, window or hop needs no dataset rebuild and runs on the
accelerator. The mel filterbank follows librosa's defaults (Slaney mel scale and area
normalisation), so `librosa.feature.melspectrogram(..., center=False, power=2)` is the reference;
the spectrogram's is `librosa.power_to_db(|librosa.stft(..., center=False)|**2, ref=np.max)`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.base import FRONTENDS


def _hz_to_mel(f):
  f = np.asarray(f, np.float64)
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                  f / f_sp)


def _mel_to_hz(m):
  m = np.asarray(m, np.float64)
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
  """[n_fft // 2 + 1, n_mels] Slaney-normalised triangular filters (librosa.filters.mel)."""
  fmax = sample_rate / 2 if fmax is None else fmax
  fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
  fdiff = np.diff(mel_freqs)
  ramps = mel_freqs[:, None] - fft_freqs[None, :]
  lower = -ramps[:-2] / fdiff[:-1, None]
  upper = ramps[2:] / fdiff[1:, None]
  weights = np.maximum(0, np.minimum(lower, upper))
  weights *= (2.0 / (mel_freqs[2:n_mels + 2] - mel_freqs[:n_mels]))[:, None]
  return weights.T.astype(np.float32)


def _power(wave, n_fft: int, hop_length: int):
  """|STFT|² [B, frames, n_fft // 2 + 1], periodic Hann window (librosa's), no padding."""
  n_frames = 1 + (wave.shape[-1] - n_fft) // hop_length
  idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
  window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa
  frames = wave[..., idx] * window
  return jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2


@FRONTENDS.register('logmel')
class LogMel(nn.Module):
  """Log-mel spectrogram with optional SpecAugment-style time/frequency masking in training."""
  sample_rate: int = 8000
  n_fft: int = 256
  hop_length: int = 80
  n_mels: int = 64
  fmin: float = 0.0
  fmax: float | None = None
  log_offset: float = 1e-6
  time_masks: int = 0      # SpecAugment: number of time masks (0 = off)
  time_mask_width: int = 10
  freq_masks: int = 0
  freq_mask_width: int = 8
  # Standardise each spectrogram by its own mean and std over time and mels: removes the
  # recording's loudness (on AV-MNIST most of what varies between clips' log-mels).
  per_example_norm: bool = False

  @property
  def fixed(self) -> bool:
    """Whether training sees a pure function of the waveform (no SpecAugment)."""
    return not (self.time_masks or self.freq_masks)

  @property
  def bins(self) -> int:
    """The last axis of its output."""
    return self.n_mels

  @nn.compact
  def __call__(self, wave, train: bool = False):
    power = _power(wave, self.n_fft, self.hop_length)
    mel = power @ mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
    logmel = jnp.log(mel + self.log_offset)
    if self.per_example_norm:
      centred = logmel - logmel.mean(axis=(-2, -1), keepdims=True)
      logmel = centred * jax.lax.rsqrt(
          jnp.square(centred).mean(axis=(-2, -1), keepdims=True) + 1e-6)
    if train and (self.time_masks or self.freq_masks):
      logmel = self._spec_augment(logmel)
    return logmel

  def _spec_augment(self, x):
    rng = self.make_rng('augment')
    b, t, f = x.shape
    for axis, count, width, size in ((1, self.time_masks, self.time_mask_width, t),
                                     (2, self.freq_masks, self.freq_mask_width, f)):
      for _ in range(count):
        rng, k1, k2 = jax.random.split(rng, 3)
        w = jax.random.randint(k1, (b, 1), 0, width + 1)
        start = jax.random.randint(k2, (b, 1), 0, jnp.maximum(size - w, 1))
        pos = jnp.arange(size)[None, :]
        drop = (pos >= start) & (pos < start + w)
        drop = drop[:, :, None] if axis == 1 else drop[:, None, :]
        x = jnp.where(drop, x.mean(axis=(1, 2), keepdims=True), x)
    return x


@FRONTENDS.register('spectrogram')
class Spectrogram(nn.Module):
  """Log-power spectrogram in dB, floored `top_db` below the clip's peak and scaled to [0, 1] by
  the clip's own range: the picture AV-MNIST's original spectrograms are (each clip rendered in
  grey levels between its own extremes, loud dark, and divided by 255 as MultiBench loads it).
  The defaults give 112 frames x 112 bins on a 1-s clip at 8 kHz (window 222, hop 70)."""
  n_fft: int = 222
  hop_length: int = 70
  top_db: float = 80.0
  loud_dark: bool = True  # 1 for the quietest value, 0 for the loudest, as grey levels
  fixed = True            # training sees a pure function of the waveform

  @property
  def bins(self) -> int:
    """The last axis of its output."""
    return self.n_fft // 2 + 1

  @nn.compact
  def __call__(self, wave, train: bool = False):
    db = 10.0 * jnp.log10(jnp.maximum(_power(wave, self.n_fft, self.hop_length), 1e-10))
    peak = db.max(axis=(-2, -1), keepdims=True)
    db = jnp.maximum(db, peak - self.top_db)
    low = db.min(axis=(-2, -1), keepdims=True)
    scaled = (db - low) / jnp.maximum(peak - low, 1e-6)
    return 1.0 - scaled if self.loud_dark else scaled


@FRONTENDS.register('identity')
class Identity(nn.Module):
  """For inputs that arrive already as features (e.g. a stored spectrogram)."""
  fixed = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    return x
