"""The base of mmjax's TFDS builders that read raw MNIST/FSDD files (`fsdd`, `avmnist`).

Where the raw files are read from, first match wins:

1. the builder's `raw_dir` argument (`datasets.prepare(name, data_dir, raw_dir)`),
2. TFDS's manual dir: `tfds build ... --manual_dir=RAW`, or
   `download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=RAW))`,
3. `$MMJAX_RAW_DATA_DIR`, else `~/.cache/mmjax/raw` (see `mmjax.data.raw.raw_data_dir`).

TFDS's default manual dir (`<data_dir>/downloads/manual`) counts only when it holds the raw
layout (`mnist/` or `fsdd/`).
"""

from __future__ import annotations

import os
import pathlib
import re

import tensorflow_datasets as tfds

from mmjax.data import raw

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "A raw data dir holding mnist/*.gz (the four original MNIST files) and "
    "fsdd/recordings/*.wav (the 3,000 FSDD v1.0.10 recordings), see docs/datasets.md; pass it as "
    "--manual_dir. Without one the files are read from $MMJAX_RAW_DATA_DIR, or downloaded into "
    "~/.cache/mmjax/raw, and verified against their published hashes either way.")
RAW_LAYOUT = ("mnist", "fsdd")


def _manual_dir(dl_manager) -> pathlib.Path | None:
  """The manual dir TFDS was given, or None where it was not given (or is TFDS's default and
  holds no raw data)."""
  if dl_manager is None:
    return None
  default = dl_manager.download_dir / "manual"
  try:
    path = dl_manager.manual_dir
  except AssertionError as e:  # not enabled, or missing/empty
    given = re.match(r"Manual directory (.*) does not exist or is empty", str(e))
    if given and given.group(1) != str(default):
      raise raw.RawDataError(f"{given.group(1)}: manual dir (--manual_dir) does not exist or is "
                             "empty; point it at the raw data dir (mnist/, fsdd/recordings/)") \
          from None
    return None
  if os.fspath(path) == os.fspath(default) and not any((path / d).is_dir() for d in RAW_LAYOUT):
    return None
  return pathlib.Path(os.fspath(path))


class RawDataBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder whose `_split_generators` reads raw files from `self.raw_data(dl_manager)`."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def __init__(self, *, raw_dir: str | os.PathLike | None = None, **kwargs):
    self.raw_dir = raw_dir
    super().__init__(**kwargs)

  def raw_data(self, dl_manager=None) -> pathlib.Path:
    """The verified-on-read raw data dir (absolute); see the module docstring for the order."""
    if self.raw_dir:
      return raw.raw_data_dir(self.raw_dir)
    manual = _manual_dir(dl_manager)
    if manual is not None:
      return raw.raw_data_dir(manual)
    return raw.raw_data_dir()
