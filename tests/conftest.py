"""Shared test setup: built datasets go to a per-session temporary TFDS_DATA_DIR, never ../shared."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
RAW_DATA_DIR = pathlib.Path(os.environ.get('MMJAX_RAW_DATA_DIR', REPO.parent / 'shared' / 'data'))


@pytest.fixture(scope='session', autouse=True)
def tfds_data_dir(tmp_path_factory):
  """Every test builds TFDS data into one session directory unless TFDS_DATA_DIR is set."""
  path = os.environ.get('TFDS_DATA_DIR') or str(tmp_path_factory.mktemp('tfds'))
  os.environ['TFDS_DATA_DIR'] = path
  return path


def small_config(variant: str = 'synthetic', **overrides):
  """A configs/late_fusion.py:<variant> config shrunk for fast tests."""
  from configs import late_fusion  # pylint: disable=import-outside-toplevel
  config = late_fusion.get_config(variant)
  config.batch_size = 16
  config.num_train_steps = 8
  config.log_every_steps = 4
  config.eval_every_steps = 8
  config.checkpoint_every_steps = 4
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config
