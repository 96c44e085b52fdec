"""AV-MNIST protocol v1 as two TF-free TFDS builders: `fsdd` and `avmnist`.

`fsdd/<config>` holds one example per FSDD recording (the waveform);
`avmnist/<config>` holds one example per MNIST image plus the `audio_id`
(= fsdd `recording_id`) of its paired recording. The waveform is not
repeated per image: readers join `audio_id` -> `fsdd/<same config>`, or
`avmnist/standard` -> `fsdd/snr0db` or `fsdd/snr-6db` for the benchmark at
another audio SNR.
See docs/datasets.md for the full protocol.

  from mmjax.data import datasets
  builder = datasets.prepare("avmnist/standard", data_dir, raw_dir)
  source = builder.as_data_source()["train"]              # random access
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mmjax.data import raw
from mmjax.data.builder import RawDataBuilder

PROTOCOL = "v1"
RELEASE_NOTES = {
    "1.0.0": "Protocol v1.",
    "1.1.0": "Configs snr0db and snr-6db: standard with the audio noise at 0 and -6 dB SNR. "
             "standard and clean unchanged (still 1.0.0).",
}
# What a run records as the data's version (datasets.json). avmnist's 1.1.0 configs snr0db and
# snr-6db were removed later: they stored standard's examples again, and avmnist/standard joined
# with fsdd/snr0db or fsdd/snr-6db reads the same; no remaining config's data changed.
VERSION = tfds.core.Version("1.1.0")

# 1 s at 8 kHz; leaves 99.33% of the 3,000 recordings uncut (max 18,262).
AUDIO_LENGTH = 8000
# Audio-only LeNet lands near 54% here (calibration); the target band is 40-70%.
NOISE_SNR_DB = -12.0
# The audio SNR of every fsdd config with noise: `standard` (the benchmark) and the same recordings
# at higher SNRs, for studies of modality imbalance. `clean` has none. AV-MNIST's images do not
# depend on the audio's SNR: `avmnist/standard` is joined with any of them.
CONFIG_SNR_DB = {"standard": NOISE_SNR_DB, "snr0db": 0.0, "snr-6db": -6.0}
# PCA keeps leading components until this explained-variance fraction is reached.
PCA_VARIANCE_KEPT = 0.25
N_TRAIN_IMAGES = 55000  # MNIST train[:55000]; the rest is validation

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_TAKES = {
    "train": range(10, 50),
    "validation": range(5, 10),
    "test": range(0, 5),
}
# Test example_ids follow the 60,000 MNIST train ids so ids are unique.
TEST_ID_OFFSET = 60000

_HOMEPAGE_FSDD = "https://github.com/Jakobovski/free-spoken-digit-dataset"
_HOMEPAGE_MNIST = "http://yann.lecun.com/exdb/mnist/"

def _seed(*parts: object) -> int:
  """A 64-bit seed that depends only on the protocol version and `parts`."""
  text = "/".join(["mmjax", "avmnist", PROTOCOL, *map(str, parts)])
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


# ----------------------------------------------------------------------------
# Protocol pieces (pure functions of the protocol version and ids)


def fit_pca(train_images: np.ndarray, kept: float = PCA_VARIANCE_KEPT):
  """(mean [784], components [784, k]) of the leading components.

  k is the smallest count whose cumulative explained variance reaches
  `kept`. float64 throughout so the uint8 result does not depend on BLAS
  rounding noise.
  """
  x = train_images.reshape(len(train_images), -1).astype(np.float64)
  mean = x.mean(axis=0)
  xc = x - mean
  cov = xc.T @ xc / (len(x) - 1)
  eigvals, eigvecs = np.linalg.eigh(cov)
  eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
  cum = np.cumsum(eigvals) / eigvals.sum()
  k = int(np.searchsorted(cum, kept) + 1)
  return mean, eigvecs[:, :k]


def pca_degrade(images: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
  """Project onto `comps`, add the mean back, round and clip to uint8."""
  x = images.reshape(len(images), -1).astype(np.float64) - mean
  rec = np.rint((x @ comps) @ comps.T + mean)
  # In place with float bounds: np.clip with int bounds on float64 took ~10x longer here.
  np.clip(rec, 0.0, 255.0, out=rec)
  return rec.astype(np.uint8).reshape(images.shape)


def fit_audio(samples: np.ndarray) -> tuple[np.ndarray, int]:
  """Zero-pad at the end / crop to AUDIO_LENGTH; returns (audio, kept length)."""
  n = min(len(samples), AUDIO_LENGTH)
  out = np.zeros(AUDIO_LENGTH, np.int16)
  out[:n] = samples[:n]
  return out, n


def add_noise(audio: np.ndarray,
              length: int,
              name: str,
              snr_db: float = NOISE_SNR_DB) -> np.ndarray:
  """White Gaussian noise at `snr_db` over the whole clip, clipped to int16.

  Signal power is measured on the recording's own `length` samples (not
  the zero padding); the noise covers the padding too, so exact zeros do not
  reveal the clip length. The noise depends only on (protocol, file name).
  """
  x = audio.astype(np.float64)
  power = float(np.mean(x[:length]**2)) if length else 0.0
  sigma = np.sqrt(power / 10.0**(snr_db / 10.0))
  rng = np.random.Generator(np.random.PCG64(_seed("fsdd-noise", name)))
  y = x + sigma * rng.standard_normal(len(x))
  return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def fsdd_split_ids(split: str) -> np.ndarray:
  """Sorted recording_ids whose take belongs to `split`."""
  takes = FSDD_TAKES[split]
  return np.array(
      [rid for rid, name in enumerate(raw.fsdd_names()) if raw.parse_fsdd_name(name)[2] in takes],
      np.int32)


def pair_recordings(labels: np.ndarray, split: str) -> np.ndarray:
  """recording_id paired with each image of `split` (labels in file order).

  Per digit, a seeded permutation of that digit's recordings in the split
  is cycled over the split's images of that digit, in MNIST order; every
  recording is used equally often (+-1).
  """
  names = raw.fsdd_names()
  ids = fsdd_split_ids(split)
  digits = np.array([raw.parse_fsdd_name(names[i])[0] for i in ids])
  out = np.full(len(labels), -1, np.int32)
  for d in range(10):
    cands = ids[digits == d]
    perm = np.random.Generator(np.random.PCG64(_seed("pairing", split, d))).permutation(len(cands))
    where = np.flatnonzero(labels == d)
    out[where] = cands[perm[np.arange(len(where)) % len(cands)]]
  return out


def _png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return buf.getvalue()


# ----------------------------------------------------------------------------
# Builders

_CONFIGS = [
    # Unchanged since 1.0.0, so they keep that version (and existing builds).
    tfds.core.BuilderConfig(
        name="standard",
        version="1.0.0",
        release_notes={"1.0.0": RELEASE_NOTES["1.0.0"]},
        description="Protocol v1 benchmark: degraded modality (see docs/datasets.md).",
    ),
    tfds.core.BuilderConfig(
        name="clean",
        version="1.0.0",
        release_notes={"1.0.0": RELEASE_NOTES["1.0.0"]},
        description="Protocol v1 splits and pairing, no degradation.",
    ),
]
_FSDD_SNR_CONFIGS = [
    tfds.core.BuilderConfig(
        name=name,
        description=f"The recordings with the audio noise at {CONFIG_SNR_DB[name]:g} dB SNR "
        "instead of -12 dB: the same noise draw as standard's, scaled.",
    ) for name in ("snr0db", "snr-6db")
]


def _label():
  return tfds.features.ClassLabel(num_classes=10)


def _speaker():
  return tfds.features.ClassLabel(names=list(SPEAKERS))


def _info(builder, description: str, features: dict, supervised_keys: tuple, homepage: str,
          license_: str) -> tfds.core.DatasetInfo:
  """A builder's DatasetInfo. Examples are stored in id order, unshuffled, so that an index
  into a split is an id."""
  return tfds.core.DatasetInfo(
      builder=builder, description=description, features=tfds.features.FeaturesDict(features),
      supervised_keys=supervised_keys, disable_shuffling=True, homepage=homepage,
      license=license_)


class Fsdd(RawDataBuilder):
  """FSDD recordings, one example per recording, split by take."""

  name = "fsdd"
  VERSION = VERSION
  RELEASE_NOTES = RELEASE_NOTES
  BUILDER_CONFIGS = _CONFIGS + _FSDD_SNR_CONFIGS

  def _info(self) -> tfds.core.DatasetInfo:
    snr = CONFIG_SNR_DB.get(self.builder_config.name)
    noise = f"white Gaussian noise at {snr:g} dB SNR" if snr is not None else "no noise"
    audio = tfds.features.Tensor(shape=(AUDIO_LENGTH,), dtype=np.int16)
    return _info(self, (f"Free Spoken Digit Dataset v1.0.10, AV-MNIST protocol {PROTOCOL}: 8 kHz "
                        f"int16 audio, {AUDIO_LENGTH} samples, {noise}."),
                 # stored in recording_id order
                 {"audio": audio, "length": np.int32, "label": _label(), "speaker": _speaker(),
                  "take": np.int32, "recording_id": np.int32},
                 ("audio", "label"), _HOMEPAGE_FSDD, "CC BY-SA 4.0")

  def _split_generators(self, dl_manager):
    recordings = raw.fsdd_recordings(self.raw_data(dl_manager))  # all verified first
    return {split: self._generate_examples(recordings, split) for split in FSDD_TAKES}

  def _generate_examples(self, recordings, split):
    snr = CONFIG_SNR_DB.get(self.builder_config.name)
    names = list(recordings)
    for rid in fsdd_split_ids(split):
      name = names[rid]
      digit, speaker, take = raw.parse_fsdd_name(name)
      audio, length = fit_audio(raw.read_wav(recordings[name]))
      if snr is not None:
        audio = add_noise(audio, length, name, snr)
      yield int(rid), {
          "audio": audio,
          "length": length,
          "label": digit,
          "speaker": speaker,
          "take": take,
          "recording_id": int(rid),
      }


class Avmnist(RawDataBuilder):
  """MNIST images paired with FSDD recording ids of the same digit."""

  name = "avmnist"
  VERSION = VERSION
  RELEASE_NOTES = RELEASE_NOTES
  BUILDER_CONFIGS = _CONFIGS
  # Removed since 1.1.0 (see VERSION): what reads the same examples.
  REMOVED_CONFIGS = {
      c.name: f"AV-MNIST with fsdd/{c.name} audio is avmnist/standard with "
              f"--config.dataset.joins.audio.dataset=fsdd/{c.name}" for c in _FSDD_SNR_CONFIGS}

  def _info(self) -> tfds.core.DatasetInfo:
    deg = ("PCA-degraded images (75% of energy removed)"
           if self.builder_config.name != "clean" else "original images")
    return _info(self, (f"AV-MNIST protocol {PROTOCOL}: MNIST {deg}, each paired with an FSDD "
                        f"recording of the same digit via audio_id (= "
                        f"fsdd/{self.builder_config.name} recording_id)."),
                 # stored in example_id order
                 {"image": tfds.features.Image(shape=(28, 28, 1)), "label": _label(),
                  "audio_id": np.int32, "speaker": _speaker(), "image_id": np.int32,
                  "example_id": np.int32},
                 ("image", "label"), _HOMEPAGE_MNIST, "CC BY-SA 3.0 (MNIST), CC BY-SA 4.0 (FSDD)")

  def _split_generators(self, dl_manager):
    raw_dir = self.raw_data(dl_manager)
    train_x, train_y = raw.load_mnist(raw_dir, "train")
    test_x, test_y = raw.load_mnist(raw_dir, "test")
    if self.builder_config.name != "clean":  # standard: PCA-degraded
      mean, comps = fit_pca(train_x[:N_TRAIN_IMAGES])
      train_x = pca_degrade(train_x, mean, comps)
      test_x = pca_degrade(test_x, mean, comps)
    n = N_TRAIN_IMAGES
    parts = {
        "train": (train_x[:n], train_y[:n], np.arange(0, n), 0),
        "validation": (train_x[n:], train_y[n:], np.arange(n, len(train_y)), 0),
        "test": (test_x, test_y, np.arange(len(test_y)), TEST_ID_OFFSET),
    }
    return {split: self._generate_examples(split, *args) for split, args in parts.items()}

  def _generate_examples(self, split, images, labels, image_ids, id_offset):
    names = raw.fsdd_names()
    audio_ids = pair_recordings(labels, split)
    for img, label, image_id, audio_id in zip(images, labels, image_ids, audio_ids):
      example_id = int(image_id) + id_offset
      yield example_id, {
          "image": _png(img),
          "label": int(label),
          "audio_id": int(audio_id),
          "speaker": raw.parse_fsdd_name(names[audio_id])[1],
          "image_id": int(image_id),
          "example_id": example_id,
      }
