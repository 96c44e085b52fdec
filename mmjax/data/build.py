"""`tfds build` for mmjax's datasets, without TensorFlow.

  python -m mmjax.data.build avmnist fsdd --manual_dir=../shared/data [--data_dir=DIR]

is TFDS's own `tfds build` command (the same flags: --config, --data_dir, --manual_dir, ...) with
`--imports=mmjax.data.avmnist,mmjax.data.synthetic` and `--file_format=array_record` filled in. The
`tfds` console script itself imports TensorFlow at start-up (for its other commands); where
TensorFlow is installed, this is the same build:

  tfds build avmnist --imports=mmjax.data.avmnist --file_format=array_record --manual_dir=RAW

The raw dir comes from --manual_dir (see mmjax.data.builder for the order); built datasets go to
--data_dir (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
"""

import sys

from absl import app
from tensorflow_datasets.scripts.cli import build as tfds_build
from tensorflow_datasets.scripts.cli import cli_utils

IMPORTS = 'mmjax.data.avmnist,mmjax.data.synthetic'
DESCRIPTION = 'Build mmjax datasets (tfds build, without TensorFlow).'


def with_defaults(argv: list[str]) -> list[str]:
  """argv with mmjax's --imports and --file_format unless given."""
  given = {a.split('=', 1)[0] for a in argv[1:] if a.startswith('--')}
  extra = []
  if '--imports' not in given and '-i' not in given:
    extra.append(f'--imports={IMPORTS}')
  if '--file_format' not in given:
    extra.append('--file_format=array_record')
  return [argv[0], *argv[1:], *extra]


_parse = cli_utils.make_flags_parser(tfds_build.Args, description=DESCRIPTION)


def parse_flags(argv: list[str]) -> tfds_build.Args:
  return _parse(with_defaults(argv))


def main(args: tfds_build.Args) -> None:
  args.execute()


if __name__ == '__main__':
  app.run(main, argv=sys.argv, flags_parser=parse_flags)
