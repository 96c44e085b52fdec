"""AV-MNIST protocol v1 builders: sizes, pairing, determinism, raw-data errors.

Needs the raw data: $MMJAX_RAW_DATA_DIR, else ../shared/data next to the repo.
The datasets are built once per module into tmp dirs (~15-25 s per config, 2 cores).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import pathlib
import shutil
import tarfile
import threading

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


# RAW is absolute: _link_tree's links and the builders' paths agree.
from tests.conftest import RAW_DATA_DIR as RAW, needs_raw_data  # noqa: E402

pytestmark = needs_raw_data

tfds = pytest.importorskip("tensorflow_datasets")
from mmjax.data import avmnist, datasets, input_pipeline, raw  # noqa: E402

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module", autouse=True)
def _offline(tmp_path_factory):
  # Tests never reach the network or the user's cache; the download tests
  # switch downloads back on against a local server.
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MMJAX_RAW_DOWNLOAD", "0")
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    mp.delenv("MMJAX_MNIST_URL", raising=False)
    mp.delenv("MMJAX_FSDD_URL", raising=False)
    yield


def _read_all(builder) -> dict[str, dict[str, np.ndarray]]:
  """split -> feature -> stacked array, in stored order."""
  out = {}
  for split, src in builder.as_data_source().items():
    exs = src.__getitems__(range(len(src)))
    out[split] = {k: np.stack([np.asarray(e[k]) for e in exs]) for k in exs[0]}
  return out


def _content_digests(builder) -> dict[str, str]:
  """split -> sha256 of every stored example in stored order: each feature's name, dtype, shape
  and bytes, images as their stored PNG bytes. Not of the array_record files: TFDS stores an
  example as a tf.train.Example, whose feature map protobuf (upb) writes in an order that
  differs from one process to the next."""
  decoders = {"image": tfds.decode.SkipDecoding()} if "image" in builder.info.features else None
  out = {}
  for split, src in builder.as_data_source(decoders=decoders).items():
    h = hashlib.sha256()
    for example in src.__getitems__(range(len(src))):
      for name in sorted(example):
        value = np.asarray(example[name])
        h.update(f"{name}:{value.dtype.str}:{value.shape}:".encode() + value.tobytes())
    out[split] = h.hexdigest()
  return out


class Built:

  def __init__(self, data_dir, config, read=True):
    self.data_dir = data_dir
    self.fsdd = datasets.prepare(f"fsdd/{config}", data_dir, RAW)
    self.avmnist = datasets.prepare(f"avmnist/{config}", data_dir, RAW)
    if read:
      self.av = _read_all(self.avmnist)
      self.fs = _read_all(self.fsdd)


@pytest.fixture(scope="module")
def std(tfds_data_dir):
  # The session's build, which the training tests read too (built once for the session).
  return Built(pathlib.Path(tfds_data_dir), "standard")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
  return Built(tmp_path_factory.mktemp("tfds_clean"), "clean")


@pytest.fixture(scope="module")
def mnist():
  return {"train": raw.load_mnist(RAW, "train"), "test": raw.load_mnist(RAW, "test")}


# ----------------------------------------------------------------------------
# Contents


@pytest.mark.slow
def test_fsdd_splits(std):
  sizes = {s: len(std.fs[s]["recording_id"]) for s in SPLITS}
  assert sizes == {"train": 2400, "validation": 300, "test": 300}
  names = raw.fsdd_names()
  seen = set()
  for split in SPLITS:
    f = std.fs[split]
    ids = f["recording_id"]
    assert list(ids) == sorted(ids)
    assert not seen & set(ids.tolist())  # disjoint across splits
    seen |= set(ids.tolist())
    assert set(f["take"].tolist()) == set(avmnist.FSDD_TAKES[split])
    assert f["audio"].dtype == np.int16
    assert f["audio"].shape == (len(ids), avmnist.AUDIO_LENGTH)
    for i, rid in enumerate(ids):
      digit, speaker, take = raw.parse_fsdd_name(names[rid])
      assert (f["label"][i], f["take"][i]) == (digit, take)
      assert avmnist.SPEAKERS[f["speaker"][i]] == speaker
  assert seen == set(range(3000))


@pytest.mark.slow
def test_fsdd_clean_is_raw_audio(clean):
  names = raw.fsdd_names()
  for split in SPLITS:
    f = clean.fs[split]
    for i in range(0, len(f["recording_id"]), 7):
      x = raw.read_wav(RAW / "fsdd" / "recordings" / names[f["recording_id"][i]])
      n = min(len(x), avmnist.AUDIO_LENGTH)
      assert f["length"][i] == n
      np.testing.assert_array_equal(f["audio"][i][:n], x[:n])
      assert not f["audio"][i][n:].any()


@pytest.mark.slow
def test_fsdd_standard_noise_snr(std, clean):
  for split in SPLITS:
    noisy, ref = std.fs[split], clean.fs[split]
    np.testing.assert_array_equal(noisy["length"], ref["length"])
    snrs = []
    for i in range(len(ref["length"])):
      n = ref["length"][i]
      x = ref["audio"][i][:n].astype(np.float64)
      e = noisy["audio"][i][:n].astype(np.float64) - x
      if (np.abs(noisy["audio"][i].astype(np.int32)) < 32767).all():  # unclipped
        snrs.append(10 * np.log10(np.mean(x**2) / np.mean(e**2)))
    assert abs(np.median(snrs) - avmnist.NOISE_SNR_DB) < 0.3
    # the padding carries noise too, so zeros do not give the length away
    assert (noisy["audio"][:, -1] != 0).mean() > 0.9


@pytest.mark.slow
def test_avmnist_splits_and_ids(std, mnist):
  av = std.av
  assert {
      s: len(av[s]["label"]) for s in SPLITS
  } == {
      "train": 55000,
      "validation": 5000,
      "test": 10000
  }
  np.testing.assert_array_equal(av["train"]["image_id"], np.arange(55000))
  np.testing.assert_array_equal(av["validation"]["image_id"], np.arange(55000, 60000))
  np.testing.assert_array_equal(av["test"]["image_id"], np.arange(10000))
  np.testing.assert_array_equal(av["train"]["label"], mnist["train"][1][:55000])
  np.testing.assert_array_equal(av["validation"]["label"], mnist["train"][1][55000:])
  np.testing.assert_array_equal(av["test"]["label"], mnist["test"][1])
  ex_ids = np.concatenate([av[s]["example_id"] for s in SPLITS])
  assert len(np.unique(ex_ids)) == 70000


@pytest.mark.slow
def test_pairing(std):
  label_of = np.zeros(3000, int)
  speaker_of = np.zeros(3000, int)
  split_of = {}
  for split in SPLITS:
    f = std.fs[split]
    label_of[f["recording_id"]] = f["label"]
    speaker_of[f["recording_id"]] = f["speaker"]
    split_of.update(dict.fromkeys(f["recording_id"].tolist(), split))
  used = []
  for split in SPLITS:
    a = std.av[split]
    np.testing.assert_array_equal(label_of[a["audio_id"]], a["label"])
    np.testing.assert_array_equal(speaker_of[a["audio_id"]], a["speaker"])
    assert {split_of[i] for i in a["audio_id"].tolist()} == {split}
    # every recording of the split is used, evenly within each digit
    ids = set(a["audio_id"].tolist())
    assert ids == {i for i, s in split_of.items() if s == split}
    for d in range(10):
      counts = np.unique(a["audio_id"][a["label"] == d], return_counts=True)[1]
      assert counts.max() - counts.min() <= 1
    used.append(ids)
  assert not (used[0] & used[1] or used[0] & used[2] or used[1] & used[2])


@pytest.mark.slow
def test_clean_and_standard_share_pairing(std, clean):
  for split in SPLITS:
    for key in ("label", "audio_id", "speaker", "image_id", "example_id"):
      np.testing.assert_array_equal(std.av[split][key], clean.av[split][key])


@pytest.mark.slow
def test_images(std, clean, mnist):
  np.testing.assert_array_equal(clean.av["train"]["image"][..., 0], mnist["train"][0][:55000])
  np.testing.assert_array_equal(clean.av["test"]["image"][..., 0], mnist["test"][0])
  mean, comps = avmnist.fit_pca(mnist["train"][0][:55000])
  assert comps.shape == (784, 4)
  x = mnist["train"][0][:55000].reshape(55000, -1).astype(np.float64)
  y = std.av["train"]["image"].reshape(55000, -1).astype(np.float64)
  kept = ((y - mean)**2).sum() / ((x - mean)**2).sum()
  assert 0.2 < kept < 0.3  # ~75% of the energy removed
  np.testing.assert_array_equal(std.av["test"]["image"][..., 0],
                                avmnist.pca_degrade(mnist["test"][0], mean, comps))


@pytest.mark.slow
def test_two_builds_identical(std, tmp_path_factory):
  # The same stored examples, PNG bytes included (the session's build may be another process's).
  again = Built(tmp_path_factory.mktemp("tfds_std_again"), "standard", read=False)
  for built, rebuilt in ((std.fsdd, again.fsdd), (std.avmnist, again.avmnist)):
    expected = _content_digests(built)
    assert set(expected) == set(SPLITS) and _content_digests(rebuilt) == expected


@pytest.mark.slow
def test_build_reuses_prepared(std):
  # Prepared data is reused without touching the raw dir at all.
  b = datasets.prepare("avmnist/standard", std.data_dir, "/nonexistent/raw")
  assert b.is_prepared()
  src = tfds.data_source("avmnist/standard", data_dir=str(std.data_dir), download=False)
  assert len(src["test"]) == 10000


@pytest.mark.slow
def test_audio_join_table(std):
  sources = std.fsdd.as_data_source()
  audio = input_pipeline.join_table(sources, "recording_id", "audio")
  length = input_pipeline.join_table(sources, "recording_id", "length")
  assert audio.shape == (3000, avmnist.AUDIO_LENGTH)
  f = std.fs["validation"]
  np.testing.assert_array_equal(audio[f["recording_id"]], f["audio"])
  np.testing.assert_array_equal(length[f["recording_id"]], f["length"])


# ----------------------------------------------------------------------------
# Raw-data errors


def _link_tree(dst: pathlib.Path) -> pathlib.Path:
  """A raw dir of symlinks to the real files; corruptions replace a link."""
  for sub in ("mnist", "fsdd/recordings"):
    (dst / sub).mkdir(parents=True)
    for p in (RAW / sub).iterdir():
      (dst / sub / p.name).symlink_to(p.resolve())
  return dst


def _replace(path: pathlib.Path, data: bytes | None):
  original = path.resolve().read_bytes()
  path.unlink()  # never write through the link into the shared copy
  if data is not None:
    path.write_bytes(data)
  return original


def _flip(b):
  return b[:100] + bytes([b[100] ^ 0xFF]) + b[101:]


CASES = {
    "mnist-md5": ("avmnist", "mnist/train-labels-idx1-ubyte.gz", _flip, "md5"),
    "mnist-missing": ("avmnist", "mnist/t10k-labels-idx1-ubyte.gz", None, "missing"),
    "mnist-truncated-gz":
        ("avmnist", "mnist/t10k-images-idx3-ubyte.gz", lambda b: b[:len(b) // 2], "truncated"),
    "wav-truncated":
        ("fsdd", "fsdd/recordings/3_theo_7.wav", lambda b: b[:len(b) // 2], "truncated WAV"),
    "wav-not-wav": ("fsdd", "fsdd/recordings/9_lucas_49.wav", lambda b: b"not a wav file\n" * 40,
                    "not a valid WAV"),
    "wav-header-only":
        ("fsdd", "fsdd/recordings/0_george_0.wav", lambda b: b[:30], "not a valid WAV"),
    "wav-missing": ("fsdd", "fsdd/recordings/5_jackson_20.wav", None, "missing"),
}


def _assert_nothing_prepared(ds, data_dir):
  assert not tfds.builder(f"{ds}/standard", data_dir=str(data_dir)).is_prepared()
  assert not [p for p in pathlib.Path(data_dir).rglob("*") if "incomplete" in p.name]
  with pytest.raises(Exception):
    tfds.data_source(f"{ds}/standard", data_dir=str(data_dir), download=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_raw_file(case, tmp_path):
  ds, rel, corrupt, words = CASES[case]
  raw_dir = _link_tree(tmp_path / "raw")
  target = raw_dir / rel
  original = _replace(target, None)
  if corrupt is not None:
    target.write_bytes(corrupt(original))
  data_dir = tmp_path / "tfds"
  builder_cls = {"fsdd": avmnist.Fsdd, "avmnist": avmnist.Avmnist}[ds]
  builder = builder_cls(config="standard",
                        data_dir=str(data_dir),
                        raw_dir=raw_dir,
                        file_format="array_record")
  with pytest.raises(raw.RawDataError) as err:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        try_download_gcs=False))
  msg = str(err.value)
  assert "\n" not in msg and str(target) in msg and words in msg, msg
  assert "MMJAX_RAW_DATA_DIR" in msg
  _assert_nothing_prepared(ds, data_dir)
  # the same through datasets.prepare()
  with pytest.raises(raw.RawDataError, match=target.name):
    datasets.prepare(f"{ds}/standard", data_dir, raw_dir)
  _assert_nothing_prepared(ds, data_dir)


def test_missing_raw_dir(tmp_path):
  with pytest.raises(raw.RawDataError, match="nope.*does not exist"):
    datasets.prepare("fsdd/standard", tmp_path / "tfds", tmp_path / "nope")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MMJAX_RAW_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(raw.RawDataError, match="gone.*MMJAX_RAW_DATA_DIR"):
      raw.raw_data_dir()


def test_truncated_gzip_and_wav_readers(tmp_path):
  gz = tmp_path / "t10k-labels-idx1-ubyte.gz"
  gz.write_bytes((RAW / "mnist" / gz.name).read_bytes()[:2000])
  with pytest.raises(raw.RawDataError, match="truncated or corrupt gzip"):
    raw._read_idx(gz, 2049, (10000,))
  wav = tmp_path / "1_theo_1.wav"
  wav.write_bytes((RAW / "fsdd" / "recordings" / wav.name).read_bytes()[:-100])
  with pytest.raises(raw.RawDataError, match="1_theo_1.wav: truncated WAV"):
    raw.read_wav(wav)


# ----------------------------------------------------------------------------
# Downloads, against a local server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    pass


@contextlib.contextmanager
def _serve(directory: pathlib.Path, lifetime_s: float = 120.0):
  """http://127.0.0.1:<port>/ serving `directory`; shuts itself down."""
  handler = functools.partial(_QuietHandler, directory=str(directory))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  timer = threading.Timer(lifetime_s, server.shutdown)
  timer.daemon = True
  timer.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/"
  finally:
    timer.cancel()
    server.shutdown()
    server.server_close()
    thread.join(10)


def _release_tarball(path: pathlib.Path, corrupt: str | None = None):
  """A stand-in for the v1.0.10 GitHub archive (same layout)."""
  top = "free-spoken-digit-dataset-1.0.10"
  with tarfile.open(path, "w:gz", compresslevel=1) as tar:
    readme = b"# FSDD\n"
    info = tarfile.TarInfo(f"{top}/README.md")
    info.size = len(readme)
    tar.addfile(info, io.BytesIO(readme))
    for p in sorted((RAW / "fsdd" / "recordings").iterdir()):
      data = p.read_bytes()
      if p.name == corrupt:
        data = data[:-10]
      info = tarfile.TarInfo(f"{top}/recordings/{p.name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def server_files(tmp_path_factory):
  d = tmp_path_factory.mktemp("served")
  (d / "mnist").mkdir()
  for name in raw.MNIST_FILES:
    shutil.copyfile(RAW / "mnist" / name, d / "mnist" / name)
  (d / "bad_mnist").mkdir()
  for name in raw.MNIST_FILES:
    (d / "bad_mnist" / name).write_bytes(_flip((RAW / "mnist" / name).read_bytes()))
  _release_tarball(d / "v1.0.10.tar.gz")
  _release_tarball(d / "bad.tar.gz", corrupt="4_nicolas_4.wav")
  return d


def _no_partials(root: pathlib.Path):
  return not [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.mark.slow
def test_download(server_files, tmp_path, monkeypatch, std):
  monkeypatch.setenv("MMJAX_RAW_DOWNLOAD", "1")
  raw_dir = tmp_path / "raw"
  raw_dir.mkdir()
  with _serve(server_files) as url:
    monkeypatch.setenv("MMJAX_MNIST_URL", url + "mnist")
    monkeypatch.setenv("MMJAX_FSDD_URL", url + "v1.0.10.tar.gz")
    for name in raw.MNIST_FILES:
      p = raw.mnist_file(raw_dir, name)
      assert p.read_bytes() == (RAW / "mnist" / name).read_bytes()
    recs = raw.fsdd_recordings(raw_dir)
    assert len(recs) == 3000
    assert sorted(p.name for p in (raw_dir / "fsdd" / "recordings").iterdir()) == \
        raw.fsdd_names()
    assert _no_partials(raw_dir)
    # a dataset built from the downloaded files is the same dataset
    b = datasets.prepare("fsdd/standard", tmp_path / "tfds", raw_dir)
    assert _content_digests(b) == _content_digests(std.fsdd)


def test_download_fills_only_missing(server_files, tmp_path, monkeypatch):
  monkeypatch.setenv("MMJAX_RAW_DOWNLOAD", "1")
  raw_dir = _link_tree(tmp_path / "raw")
  gone = raw_dir / "fsdd" / "recordings" / "8_yweweler_33.wav"
  _replace(gone, None)
  with _serve(server_files) as url:
    monkeypatch.setenv("MMJAX_FSDD_URL", url + "v1.0.10.tar.gz")
    raw.fsdd_recordings(raw_dir)
  assert not gone.is_symlink() and gone.read_bytes() == (RAW / "fsdd" / "recordings" /
                                                         gone.name).read_bytes()


def test_bad_downloads_are_not_kept(server_files, tmp_path, monkeypatch):
  monkeypatch.setenv("MMJAX_RAW_DOWNLOAD", "1")
  raw_dir = tmp_path / "raw"
  raw_dir.mkdir()
  with _serve(server_files) as url:
    monkeypatch.setenv("MMJAX_MNIST_URL", url + "bad_mnist/")
    with pytest.raises(raw.RawDataError,
                       match=r"train-labels-idx1-ubyte.gz: md5 \w+ != "
                       r"expected d53e105e"):
      raw.mnist_file(raw_dir, "train-labels-idx1-ubyte.gz")
    assert not (raw_dir / "mnist" / "train-labels-idx1-ubyte.gz").exists()

    monkeypatch.setenv("MMJAX_FSDD_URL", url + "bad.tar.gz")
    with pytest.raises(raw.RawDataError, match=r"4_nicolas_4.wav: sha256 .*truncated WAV"):
      raw.fsdd_recordings(raw_dir)
    assert not (raw_dir / "fsdd" / "recordings" / "4_nicolas_4.wav").exists()

    monkeypatch.setenv("MMJAX_FSDD_URL", url + "no-such-archive.tar.gz")
    with pytest.raises(raw.RawDataError, match="missing, and downloading .* failed"):
      raw.fsdd_recordings(raw_dir)
  assert _no_partials(raw_dir)


def test_downloads_off_names_the_missing_file(tmp_path):
  (tmp_path / "raw").mkdir()
  with pytest.raises(raw.RawDataError,
                     match=r"mnist/t10k-images-idx3-ubyte.gz: missing; download it from"):
    raw.mnist_file(tmp_path / "raw", "t10k-images-idx3-ubyte.gz")


# ----------------------------------------------------------------------------
# Where a build reads the raw files: raw_dir, else TFDS's manual dir, else the environment


def _build_fsdd_clean(data_dir, raw_dir=None, manual_dir=None):
  builder = avmnist.Fsdd(config="clean", data_dir=str(data_dir), raw_dir=raw_dir,
                         file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False))
  return builder


@pytest.mark.slow
def test_manual_dir_is_the_raw_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("MMJAX_RAW_DATA_DIR", str(tmp_path / "not-here"))
  builder = _build_fsdd_clean(tmp_path / "tfds", manual_dir=_link_tree(tmp_path / "raw"))
  assert builder.is_prepared()


@pytest.mark.slow
def test_raw_dir_argument_wins_over_manual_dir(tmp_path):
  (tmp_path / "other" / "fsdd").mkdir(parents=True)  # a manual dir lacking the recordings
  builder = _build_fsdd_clean(tmp_path / "tfds", raw_dir=RAW, manual_dir=tmp_path / "other")
  assert builder.is_prepared()


def test_missing_manual_dir_names_it(tmp_path):
  with pytest.raises(raw.RawDataError, match=r"nope: manual dir \(--manual_dir\) does not exist or "
                     r"is empty; point it at the raw data dir"):
    _build_fsdd_clean(tmp_path / "tfds", manual_dir=tmp_path / "nope")
  _assert_nothing_prepared("fsdd", tmp_path / "tfds")
