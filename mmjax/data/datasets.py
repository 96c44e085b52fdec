"""mmjax's TFDS datasets by name, built once on first use (under a lock, so that processes sharing
a data dir build each once), and the dataset versions a run reads (recorded in its workdir).
The runtime pipeline that reads them is mmjax.data.input_pipeline."""

import contextlib
import os

import tensorflow_datasets as tfds

try:
  import fcntl
except ImportError:  # not on Windows: builds there are not locked
  fcntl = None

from mmjax import workdir as workdirs
from mmjax.data.builder import RawDataBuilder
from mmjax.errors import UserError


def builders() -> dict:
  """The TFDS builders mmjax defines, by name. Any other name is read with tfds.data_source."""
  from mmjax.data import avmnist, synthetic  # pylint: disable=import-outside-toplevel
  return {'synthetic': synthetic.Synthetic, 'avmnist': avmnist.Avmnist, 'fsdd': avmnist.Fsdd}


def data_dir_path(data_dir) -> str | None:
  """A TFDS data_dir as given (config or TFDS_DATA_DIR), resolved once: a relative local path made
  absolute, a URL (gs://...) kept as it is; None for TFDS's default."""
  return None if not data_dir else os.fspath(workdirs.resolve(data_dir))


def prepare(name: str, data_dir: str | None = None, raw_dir: str | None = None):
  """The builder of mmjax dataset `name` ('avmnist/standard', ...), built on first use.

  Raw files are read from `raw_dir`, else MMJAX_RAW_DATA_DIR, else downloaded (mmjax.data.raw);
  a prepared dataset is reused without touching them.
  """
  base, _, variant = name.partition('/')
  cls = builders()[base]
  configs = [c.name for c in cls.BUILDER_CONFIGS]
  if variant and variant not in configs:
    # A builder names what replaces a config it no longer has (REMOVED_CONFIGS).
    instead = getattr(cls, 'REMOVED_CONFIGS', {}).get(variant)
    raise UserError(f'dataset {name!r} not found: {base} has the configs '
                    f'{", ".join(configs)}' + (f'; {instead}' if instead else ''))
  kwargs = {'config': variant} if variant else {}
  if issubclass(cls, RawDataBuilder):
    kwargs['raw_dir'] = raw_dir
  make = lambda: cls(data_dir=data_dir_path(data_dir), file_format='array_record', **kwargs)
  builder = make()
  if not builder.is_prepared():
    with _build_lock(builder):
      builder = make()  # another process may have built it while this one waited
      if not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


@contextlib.contextmanager
def _build_lock(builder):
  """An exclusive file lock in the data dir while a dataset builds, so that processes sharing
  the dir (the hosts of a run on a shared file system, runs started together, parallel test
  workers) build it once: the others wait, then find it prepared. A bucket (gs://) has no file
  locks: build there once beforehand (`python -m mmjax.data.build`)."""
  root = os.fspath(builder.data_dir_root)
  if fcntl is None or '://' in root:
    yield
    return
  os.makedirs(root, exist_ok=True)
  name = builder.info.full_name.replace('/', '-')
  with open(os.path.join(root, f'.{name}.lock'), 'w', encoding='utf-8') as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.lockf(f, fcntl.LOCK_UN)


def names(config) -> list[str]:
  """The TFDS datasets a config reads: `dataset.name`, then those its joins read."""
  joins = config.dataset.get('joins') or {}
  return [config.dataset.name, *(j.dataset for j in joins.values() if j.dataset)]


def versions(config) -> dict[str, str]:
  """{dataset name: the version a run of `config` reads}: for mmjax's builders the code's
  version (the one `prepare` builds), or the version at which that config's examples last
  changed where the builder says (`EXAMPLES_VERSIONS`); for other TFDS datasets the one prepared
  in the data dir, or nothing when none is."""
  data_dir = data_dir_path(config.dataset.get('data_dir') or os.environ.get('TFDS_DATA_DIR'))
  versions = {}
  for name in names(config):
    base, _, variant = name.partition('/')
    if base in builders():
      builder = builders()[base]
      versions[name] = getattr(builder, 'EXAMPLES_VERSIONS', {}).get(variant,
                                                                     str(builder.VERSION))
      continue
    try:
      versions[name] = str(tfds.builder(name, data_dir=data_dir).version)
    except Exception:  # pylint: disable=broad-except  (not found: load_source says so)
      pass
  return versions
