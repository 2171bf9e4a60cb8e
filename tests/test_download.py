"""`fastcourse data get` / `data list` against a local HTTP server (no internet)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import socket
import sys
import threading
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastcourse.data import download
from fastcourse.data import remote as sources
from fastcourse.errors import DataError, RunError, UsageError

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=N-` support; can cut the connection after `cut_after` bytes."""

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None and srv.cuts_left:
            srv.cuts_left -= 1
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the client sees a short read
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kwargs):
        return RangeHandler(*args, directory=str(root), **kwargs)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.requests, srv.cut_after, srv.cuts_left, srv.root = [], None, 0, root
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "JPEG")
    return buf.getvalue()


def _dogscats_zip(path: Path, with_valid: bool = True, with_sample: bool = True) -> bytes:
    """A tiny archive shaped like fast.ai's: dogscats/{train,valid,sample}/{cats,dogs}, test1/."""
    splits = {"train": 6} | ({"valid": 2} if with_valid else {})
    splits |= {"sample/train": 2, "sample/valid": 1} if with_valid and with_sample else {}
    with zipfile.ZipFile(path, "w") as z:
        for split, n in splits.items():
            for cls, color in (("cats", (200, 10, 10)), ("dogs", (10, 10, 200))):
                for i in range(n):
                    z.writestr(f"dogscats/{split}/{cls}/{cls}.{split.replace('/', '_')}{i}.jpg", _jpeg(color))
        for i in range(2):
            z.writestr(f"dogscats/test1/{i}.jpg", _jpeg((90, 90, 90)))
    return path.read_bytes()


def _serve(monkeypatch, server, name: str, filename: str, data: bytes, **facts) -> None:
    (server.root / filename).write_bytes(data)
    facts.setdefault("sha256", hashlib.sha256(data).hexdigest())
    src = sources.SOURCES[name]
    remote = sources.Remote(filename, server.url, **facts)
    monkeypatch.setitem(sources.SOURCES, name, dataclasses.replace(src, files=(remote,)))


@pytest.fixture
def dogscats(monkeypatch, server, tmp_path):
    data = _dogscats_zip(tmp_path / "made.zip")
    _serve(monkeypatch, server, "dogscats", "dogscats.zip", data)
    return data


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_dogscats_download_gives_the_course_layout(dogscats, tmp_path):
    out = download.get("dogscats", tmp_path / "data" / "dogscats", progress=False)
    assert out == tmp_path / "data" / "dogscats"
    assert len(list((out / "train" / "cats").glob("*.jpg"))) == 6
    assert (out / "valid" / "dogs").is_dir() and (out / "sample" / "train" / "cats").is_dir()
    assert len(list((out / "test").glob("*.jpg"))) == 2 and not (out / "test1").exists()  # test1 renamed
    assert _leftovers(tmp_path / "data") == ["dogscats"]  # no archive, .part or temporary folder
    again = download.get("dogscats", out, progress=False)  # already there: nothing fetched
    assert again == out


def test_cut_connection_leaves_part_and_next_call_resumes_with_range(dogscats, server, tmp_path):
    server.cut_after, server.cuts_left = 1000, 1
    target = tmp_path / "data" / "dogscats"
    with pytest.raises(RunError) as err:
        download.get("dogscats", target, progress=False, retries=0)
    assert "\n" not in str(err.value) and "resume" in str(err.value)
    part = tmp_path / "data" / "dogscats.zip.part"
    assert part.stat().st_size == 1000 and not target.exists()

    download.get("dogscats", target, progress=False, retries=0)
    assert server.requests == [None, "bytes=1000-"]
    assert not part.exists()
    # the reassembled archive passed its sha256 and unpacked byte for byte
    with zipfile.ZipFile(io.BytesIO(dogscats)) as z:
        original = z.read("dogscats/train/cats/cats.train0.jpg")
    assert (target / "train" / "cats" / "cats.train0.jpg").read_bytes() == original


def test_dropped_connection_is_resumed_within_one_call(dogscats, server, tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    server.cut_after, server.cuts_left = 700, 2
    download.get("dogscats", tmp_path / "dogscats", progress=False, retries=2)
    assert server.requests == [None, "bytes=700-", "bytes=1400-"]
    assert (tmp_path / "dogscats" / "train" / "dogs").is_dir()


def test_hash_mismatch_is_refused_and_leaves_nothing(monkeypatch, server, tmp_path):
    data = _dogscats_zip(tmp_path / "made.zip")
    _serve(monkeypatch, server, "dogscats", "dogscats.zip", data, sha256="0" * 64)
    target_dir = tmp_path / "data"
    with pytest.raises(DataError) as err:
        download.get("dogscats", target_dir / "dogscats", progress=False, retries=0)
    msg = str(err.value)
    assert "\n" not in msg and server.url + "dogscats.zip" in msg and "sha256" in msg
    assert _leftovers(target_dir) == []  # no .part, no archive, no extracted folder


def test_fastai_style_check_size_and_first_mib(monkeypatch, server, tmp_path):
    data = _dogscats_zip(tmp_path / "made.zip")
    _serve(
        monkeypatch,
        server,
        "dogscats",
        "dogscats.zip",
        data,
        sha256=None,
        size=len(data),
        md5_head=hashlib.md5(data[: 2**20]).hexdigest(),
    )
    assert (download.get("dogscats", tmp_path / "ok", progress=False) / "train").is_dir()
    _serve(monkeypatch, server, "dogscats", "dogscats.zip", data, sha256=None, size=len(data) + 1)
    with pytest.raises(DataError, match="size"):
        download.get("dogscats", tmp_path / "bad", progress=False, retries=0)


def test_missing_valid_and_sample_are_made_from_train(monkeypatch, server, tmp_path):
    data = _dogscats_zip(tmp_path / "made.zip", with_valid=False)
    _serve(monkeypatch, server, "dogscats", "dogscats.zip", data)
    split = {"method": "stratified", "valid": 4, "sample_train": 2, "sample_valid": 2, "seed": 0}
    monkeypatch.setitem(sources.SOURCES, "dogscats", dataclasses.replace(sources.SOURCES["dogscats"], split=split))
    out = download.get("dogscats", tmp_path / "dogscats", progress=False)
    train = {p.name for p in (out / "train").rglob("*.jpg")}
    valid = {p.name for p in (out / "valid").rglob("*.jpg")}
    assert len(valid) == 4 and len(train) == 8 and not train & valid
    assert len(list((out / "sample" / "train").rglob("*.jpg"))) == 2
    assert str(tmp_path / "dogscats") in (out / "split.json").read_text()  # not the temporary folder


def test_missing_sample_is_copied_from_train_and_valid(monkeypatch, server, tmp_path):
    data = _dogscats_zip(tmp_path / "made.zip", with_sample=False)
    _serve(monkeypatch, server, "dogscats", "dogscats.zip", data)
    split = {"method": "stratified", "valid": 4, "sample_train": 4, "sample_valid": 2, "seed": 0}
    monkeypatch.setitem(sources.SOURCES, "dogscats", dataclasses.replace(sources.SOURCES["dogscats"], split=split))
    out = download.get("dogscats", tmp_path / "dogscats", progress=False)
    sample = sorted(p.relative_to(out / "sample") for p in (out / "sample").rglob("*.jpg"))
    assert len(sample) == 6 and {p.parts[1] for p in sample} == {"cats", "dogs"}  # stratified
    assert all((out / p.parts[0] / p.parts[1] / p.name).is_file() for p in sample)  # copies, originals stay


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_mnist_and_fashion_mnist_land_where_keras_looks(monkeypatch, server, tmp_path):
    from fastcourse.data import arrays

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(arrays, "SYSTEM_DIRS", {})
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(
        buf,
        x_train=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8),
        y_train=np.arange(5),
        x_test=rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
        y_test=np.arange(3),
    )
    _serve(monkeypatch, server, "mnist", "mnist.npz", buf.getvalue())
    path = download.get("mnist", progress=False)
    assert path == tmp_path / "keras" / "datasets" / "mnist.npz"
    assert arrays.mnist(download=False).source == str(path)  # the loader now works offline

    files = {
        "train-images-idx3-ubyte.gz": _idx_gz(np.zeros((4, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx_gz(np.arange(4)),
        "t10k-images-idx3-ubyte.gz": _idx_gz(np.ones((2, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx_gz(np.arange(2)),
    }
    remotes = []
    for name, data in files.items():
        (server.root / name).write_bytes(data)
        remotes.append(sources.Remote(name, "https://unused.invalid/", md5=hashlib.md5(data).hexdigest()))
    monkeypatch.setitem(
        sources.SOURCES, "fashion_mnist", dataclasses.replace(sources.SOURCES["fashion_mnist"], files=tuple(remotes))
    )
    monkeypatch.setenv(sources.MIRROR_ENV, server.url)  # the mirror replaces every base URL
    folder = download.get("fashion_mnist", progress=False)
    assert folder == tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert arrays.fashion_mnist(download=False).x_train.shape == (4, 28, 28, 1)

    table = download.list_local(tmp_path / "data")
    found = table[table.present].set_index("name")
    assert set(found.index) == {"mnist", "fashion_mnist"}
    assert found.loc["mnist", "where"] == str(path) and found.loc["mnist", "size_mb"] >= 0
    assert not table.set_index("name").loc["dogscats", "present"]


def test_list_local_finds_a_downloaded_folder(dogscats, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    download.get("dogscats", tmp_path / "data" / "dogscats", progress=False)
    row = download.list_local(tmp_path / "data").set_index("name").loc["dogscats"]
    assert row["present"] and row["where"] == str(tmp_path / "data" / "dogscats") and row["size_mb"] > 0


def test_offline_setting_blocks_remote_hosts(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCOURSE_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(UsageError, match="FASTCOURSE_OFFLINE"):
        download.get("mnist", progress=False)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UsageError, match="dogscats, statefarm, mnist, fashion_mnist"):
        download.get("cats")


# --- statefarm through a fake kaggle package -------------------------------------------------


@pytest.fixture
def no_kaggle_token(monkeypatch, tmp_path):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_statefarm_without_credentials_says_how_to_get_them(no_kaggle_token, monkeypatch, tmp_path):
    """The kaggle package looks the token up itself when imported, and raises what kaggle 1.6/1.7's
    KaggleApi.authenticate raises without one; fastcourse turns it into one line."""
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "kaggle.py").write_text(
        'raise OSError("Could not find kaggle.json. Make sure it\'s located in /home/u/.kaggle. Or use the "\n'
        "              'environment method. See setup instructions at https://github.com/Kaggle/kaggle-api/')\n"
    )
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.delitem(sys.modules, "kaggle", raising=False)
    with pytest.raises(UsageError) as err:
        download.get("statefarm", tmp_path / "statefarm")
    msg = str(err.value)
    assert "\n" not in msg and "Could not find kaggle.json" in msg and "KAGGLE_USERNAME" in msg
    assert not (tmp_path / "statefarm").exists()


def test_statefarm_without_the_package_says_pip_install(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setitem(sys.modules, "kaggle", None)
    with pytest.raises(UsageError, match=r"pip install 'fastcourse\[kaggle\]'"):
        download.get("statefarm", tmp_path / "statefarm")


def _fake_kaggle(monkeypatch, download_files):
    module = types.ModuleType("kaggle")
    module.api = types.SimpleNamespace(competition_download_files=download_files)
    monkeypatch.setitem(sys.modules, "kaggle", module)


def test_statefarm_rules_not_accepted_says_where_to_accept(no_kaggle_token, monkeypatch, tmp_path):
    token = tmp_path / "home" / ".kaggle" / "kaggle.json"
    token.parent.mkdir(parents=True)
    token.write_text('{"username": "u", "key": "k"}')

    class ApiException(Exception):
        status = 403

    def refuse(competition, path=None, quiet=True):
        raise ApiException("(403)\nReason: Forbidden\nHTTP response body: ...")

    _fake_kaggle(monkeypatch, refuse)
    with pytest.raises(UsageError) as err:
        download.get("statefarm", tmp_path / "statefarm")
    msg = str(err.value)
    assert "\n" not in msg and "state-farm-distracted-driver-detection/rules" in msg


def test_statefarm_success_is_split_by_driver(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    seen = {}

    def fake_download(competition, path=None, quiet=True):
        seen["competition"] = competition
        rows = ["subject,classname,img"]
        with zipfile.ZipFile(Path(path) / f"{competition}.zip", "w") as z:
            for d, driver in enumerate(["p002", "p012", "p014", "p015"]):
                for c in ("c0", "c1"):
                    for i in range(2):
                        img = f"img_{d}{c}{i}.jpg"
                        z.writestr(f"imgs/train/{c}/{img}", _jpeg((d * 60, 0, 0)))
                        rows.append(f"{driver},{c},{img}")
            z.writestr("imgs/test/img_9.jpg", _jpeg((0, 0, 0)))
            z.writestr("driver_imgs_list.csv", "\n".join(rows) + "\n")

    _fake_kaggle(monkeypatch, fake_download)
    split = {"method": "grouped", "valid": 4, "sample_train": 2, "sample_valid": 2, "seed": 0}
    monkeypatch.setitem(sources.SOURCES, "statefarm", dataclasses.replace(sources.SOURCES["statefarm"], split=split))
    out = download.get("statefarm", tmp_path / "data" / "statefarm")
    assert seen["competition"] == "state-farm-distracted-driver-detection"
    assert out == tmp_path / "data" / "statefarm_split"
    assert (tmp_path / "data" / "statefarm" / "test" / "img_9.jpg").is_file()  # imgs/ flattened
    driver = {
        line.split(",")[2]: line.split(",")[0] for line in (out / "driver_imgs_list.csv").read_text().splitlines()[1:]
    }
    train = {driver[p.name] for p in (out / "train").rglob("*.jpg")}
    valid = {driver[p.name] for p in (out / "valid").rglob("*.jpg")}
    assert valid and train and not train & valid  # no driver on both sides
    assert _leftovers(tmp_path / "data") == ["statefarm", "statefarm_split"]
    table = download.list_local(tmp_path / "data")
    rows = table[table.name == "statefarm"]  # the split folder the configs read, then the download
    assert list(rows["where"]) == [str(out), str(tmp_path / "data" / "statefarm")] and rows.present.all()


def test_tgz_under_the_real_name_through_the_mirror(monkeypatch, server, tmp_path):
    import tarfile

    with zipfile.ZipFile(io.BytesIO(_dogscats_zip(tmp_path / "made.zip"))) as z:
        z.extractall(tmp_path / "tree")
    with tarfile.open(tmp_path / "dogscats.tgz", "w:gz") as t:
        t.add(tmp_path / "tree" / "dogscats", arcname="dogscats")
    data = (tmp_path / "dogscats.tgz").read_bytes()
    (server.root / "dogscats.tgz").write_bytes(data)
    real = sources.SOURCES["dogscats"].files[0]
    assert real.file == "dogscats.tgz" and real.md5_head and real.size  # fastai's published check
    fake = dataclasses.replace(real, size=len(data), md5_head=hashlib.md5(data[: 2**20]).hexdigest())
    monkeypatch.setitem(sources.SOURCES, "dogscats", dataclasses.replace(sources.SOURCES["dogscats"], files=(fake,)))
    monkeypatch.setenv(sources.MIRROR_ENV, server.url)
    out = download.get("dogscats", tmp_path / "data" / "dogscats", progress=False)
    assert (out / "test").is_dir() and len(list((out / "train").rglob("*.jpg"))) == 12
