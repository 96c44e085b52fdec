"""Verified access to the raw MNIST and FSDD files.

Layout of a raw data dir (the same as a fresh download fills in):

  <raw>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
  <raw>/fsdd/recordings/{digit}_{speaker}_{take}.wav

Every file is checked against a fixed hash (MNIST md5, FSDD sha256 from
`fsdd_manifest.tsv`) before it is used; absent files are downloaded from the
public originals, verified, and only then moved into place.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import wave
import zlib
from typing import Callable

import numpy as np

from mmjax.errors import UserError

ENV_RAW_DIR = "MMJAX_RAW_DATA_DIR"
ENV_MNIST_URL = "MMJAX_MNIST_URL"
ENV_FSDD_URL = "MMJAX_FSDD_URL"
# "0" turns downloads off: a missing file is then an error (useful offline).
ENV_DOWNLOAD = "MMJAX_RAW_DOWNLOAD"

MNIST_BASE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FSDD_ARCHIVE_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
                    "v1.0.10.tar.gz")
DOWNLOAD_TIMEOUT_S = 60.0

# name -> (md5, size in bytes) of the original distribution files.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
}
MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}

FSDD_MANIFEST = pathlib.Path(__file__).with_name("fsdd_manifest.tsv")
FSDD_SAMPLE_RATE = 8000
FSDD_NAME_RE = re.compile(r"^([0-9])_([a-z]+)_([0-9]+)\.wav$")

_FIX = f"re-download it or point {ENV_RAW_DIR} at a good copy"


class RawDataError(UserError):
  """A raw data file or dir is missing or corrupt (one-line message)."""


def _default_cache_dir() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return absolute(base) / "mmjax" / "raw"


def absolute(path: str | os.PathLike) -> pathlib.Path:
  """`path` with `~` expanded, made absolute against the current directory once, here.

  A relative path (e.g. `MMJAX_RAW_DATA_DIR=../shared/data`) means the same folder wherever it is
  used later: symlinks made from it, other working directories, subprocesses.
  """
  return pathlib.Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def raw_data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
  """The raw data dir: `override`, else $MMJAX_RAW_DATA_DIR, else a cache dir; always absolute.

  An explicitly named dir must exist (a typo should not trigger a download
  into a stray place); the default cache dir is created and filled by
  downloads.
  """
  if override:
    path, source = absolute(override), "the raw_dir argument"
  elif os.environ.get(ENV_RAW_DIR):
    path, source = absolute(os.environ[ENV_RAW_DIR]), ENV_RAW_DIR
  else:
    path = _default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path
  if not path.is_dir():
    raise RawDataError(f"{path}: raw data dir (from {source}) does not exist; create it "
                       f"(missing files are then downloaded) or point {source} at the raw data")
  return path


def _downloads_enabled(download: bool | None) -> bool:
  if download is not None:
    return download
  return os.environ.get(ENV_DOWNLOAD, "1").strip().lower() not in ("0", "false", "no")


def mnist_base_url() -> str:
  url = os.environ.get(ENV_MNIST_URL) or MNIST_BASE_URL
  return url if url.endswith("/") else url + "/"


def fsdd_archive_url() -> str:
  return os.environ.get(ENV_FSDD_URL) or FSDD_ARCHIVE_URL


def _hash_file(path: pathlib.Path, algo: str) -> str:
  h = hashlib.new(algo)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _fetch(url: str, dest_dir: pathlib.Path, what: pathlib.Path,
           check: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Downloads `url` to a temp file in `dest_dir` and runs `check` on it.

  Returns the temp path; the caller renames it into place. The temp file
  lives next to the target so the final rename is atomic.
  """
  dest_dir.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest_dir)
  tmp = pathlib.Path(tmp)
  try:
    with os.fdopen(fd, "wb") as out:
      try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
          shutil.copyfileobj(resp, out, 1 << 20)
      except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise RawDataError(f"{what}: missing, and downloading {url} failed ({reason}); "
                           f"place a copy there or point {ENV_RAW_DIR} at the raw data") from None
    check(tmp)
    return tmp
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


# ----------------------------------------------------------------------------
# MNIST


def _check_mnist(path: pathlib.Path, name: str, shown: pathlib.Path) -> None:
  md5, size = MNIST_FILES[name]
  got = _hash_file(path, "md5")
  if got != md5:
    actual = path.stat().st_size
    hint = (f"truncated: {actual} of {size} bytes"
            if actual < size else f"{actual} bytes, expected {size}")
    raise RawDataError(f"{shown}: md5 {got} != expected {md5} ({hint}); {_FIX}")


def mnist_file(raw_dir: str | os.PathLike, name: str, download: bool | None = None) -> pathlib.Path:
  """Path of a verified MNIST file, downloading it when absent."""
  if name not in MNIST_FILES:
    raise KeyError(f"unknown MNIST file {name!r}; one of {sorted(MNIST_FILES)}")
  path = pathlib.Path(raw_dir) / "mnist" / name
  if not path.exists():
    url = mnist_base_url() + name
    if not _downloads_enabled(download):
      raise RawDataError(f"{path}: missing; download it from {url} or point {ENV_RAW_DIR} at "
                         f"the raw data")
    tmp = _fetch(url, path.parent, path, lambda p: _check_mnist(p, name, path))
    os.replace(tmp, path)
  _check_mnist(path, name, path)
  return path


def _read_idx(path: pathlib.Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
  try:
    with gzip.open(path, "rb") as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
    raise RawDataError(f"{path}: truncated or corrupt gzip ({e}); {_FIX}") from None
  ndim = len(shape)
  header = 4 + 4 * ndim
  expect = (magic, *shape)
  got = tuple(int(v) for v in np.frombuffer(data[:header], ">u4")) if len(data) >= header else ()
  if got != expect:
    raise RawDataError(f"{path}: idx header {got} != expected {expect}; {_FIX}")
  n = int(np.prod(shape))
  if len(data) != header + n:
    raise RawDataError(f"{path}: idx payload has {len(data) - header} bytes, expected {n}; {_FIX}")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def load_mnist(raw_dir: str | os.PathLike,
               split: str,
               download: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 28, 28], labels uint8 [N]) of 'train' or 'test'."""
  images_name, labels_name, n = MNIST_SPLITS[split]
  images = _read_idx(mnist_file(raw_dir, images_name, download), 2051, (n, 28, 28))
  labels = _read_idx(mnist_file(raw_dir, labels_name, download), 2049, (n,))
  if labels.max() > 9:
    raise RawDataError(f"{raw_dir}/mnist/{labels_name}: label > 9; {_FIX}")
  return images, labels


# ----------------------------------------------------------------------------
# FSDD


def fsdd_manifest() -> dict[str, str]:
  """filename -> sha256 of the 3,000 FSDD v1.0.10 recordings."""
  out = {}
  for line in FSDD_MANIFEST.read_text().splitlines():
    if line and not line.startswith("#"):
      name, sha = line.split("\t")
      out[name] = sha
  return out


def fsdd_names() -> list[str]:
  """Sorted recording file names; the index is the protocol's recording_id."""
  return sorted(fsdd_manifest())


def parse_fsdd_name(name: str) -> tuple[int, str, int]:
  """'7_jackson_32.wav' -> (7, 'jackson', 32)."""
  m = FSDD_NAME_RE.match(name)
  if not m:
    raise ValueError(f"not an FSDD recording name: {name!r}")
  return int(m.group(1)), m.group(2), int(m.group(3))


def _wav_problem(data: bytes) -> str | None:
  """Why `data` is not a complete 16-bit mono WAV, or None."""
  try:
    with wave.open(io.BytesIO(data)) as w:
      n, width, channels = w.getnframes(), w.getsampwidth(), w.getnchannels()
      rate = w.getframerate()
      frames = w.readframes(n)
  except (wave.Error, EOFError, ValueError) as e:
    return f"not a valid WAV file: {e}"
  if (channels, width, rate) != (1, 2, FSDD_SAMPLE_RATE):
    return (f"WAV is {channels} ch, {8 * width} bit, {rate} Hz; expected mono "
            f"16 bit {FSDD_SAMPLE_RATE} Hz")
  if len(frames) < n * width * channels:
    return f"truncated WAV: {len(frames) // 2} of {n} samples"
  return None


def _check_wav_hash(data: bytes, expected: str, shown: str) -> None:
  got = hashlib.sha256(data).hexdigest()
  if got != expected:
    hint = _wav_problem(data) or f"{len(data)} bytes"
    raise RawDataError(f"{shown}: sha256 {got[:16]}… != expected {expected[:16]}… "
                       f"({hint}); {_FIX}")


def read_wav(path: str | os.PathLike) -> np.ndarray:
  """int16 samples of an 8 kHz mono 16-bit WAV; RawDataError if malformed."""
  data = pathlib.Path(path).read_bytes()
  problem = _wav_problem(data)
  if problem:
    raise RawDataError(f"{path}: {problem}; {_FIX}")
  with wave.open(io.BytesIO(data)) as w:
    return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)


def _install_from_archive(archive: pathlib.Path, rec_dir: pathlib.Path, wanted: dict[str, str],
                          url: str) -> None:
  """Copies the `wanted` recordings out of the release archive, verified."""
  found = set()
  try:
    with tarfile.open(archive, "r:gz") as tar:
      for member in tar:
        parts = member.name.split("/")
        if (not member.isfile() or len(parts) < 2 or parts[-2] != "recordings" or
            parts[-1] not in wanted or parts[-1] in found):
          continue
        name = parts[-1]
        data = tar.extractfile(member).read()
        _check_wav_hash(data, wanted[name], f"{url}!{member.name}")
        fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=rec_dir)
        try:
          with os.fdopen(fd, "wb") as f:
            f.write(data)
          os.replace(tmp, rec_dir / name)
        except BaseException:
          pathlib.Path(tmp).unlink(missing_ok=True)
          raise
        found.add(name)
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise RawDataError(f"{url}: unreadable archive ({e}); retry the download or "
                       f"point {ENV_RAW_DIR} at the raw data") from None
  missing = sorted(set(wanted) - found)
  if missing:
    raise RawDataError(f"{url}: archive lacks {len(missing)} recordings "
                       f"(e.g. recordings/{missing[0]}); point {ENV_RAW_DIR} at "
                       f"the raw data")


def fsdd_recordings(raw_dir: str | os.PathLike,
                    download: bool | None = None) -> dict[str, pathlib.Path]:
  """Sorted name -> path of all 3,000 recordings, each verified by sha256.

  Absent recordings are taken from the v1.0.10 release archive (each one
  checked against the manifest before it is moved into place); a present
  file with the wrong hash is an error, never silently replaced.
  """
  manifest = fsdd_manifest()
  rec_dir = pathlib.Path(raw_dir) / "fsdd" / "recordings"
  missing = {n: s for n, s in manifest.items() if not (rec_dir / n).is_file()}
  if missing:
    url = fsdd_archive_url()
    if not _downloads_enabled(download):
      first = rec_dir / min(missing)
      raise RawDataError(f"{first}: missing ({len(missing)} of {len(manifest)} recordings "
                         f"absent); download {url} or point {ENV_RAW_DIR} at the raw data")
    shown = rec_dir / min(missing)
    archive = _fetch(url, rec_dir.parent, shown, lambda p: None)
    try:
      rec_dir.mkdir(parents=True, exist_ok=True)
      _install_from_archive(archive, rec_dir, missing, url)
    finally:
      archive.unlink(missing_ok=True)
  out = {}
  for name in sorted(manifest):
    path = rec_dir / name
    _check_wav_hash(path.read_bytes(), manifest[name], str(path))
    out[name] = path
  return out
