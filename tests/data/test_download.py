"""The download path against a local HTTP server (loopback only, never the internet)."""

import dataclasses
import hashlib
import http.server
import re
import socket
import threading

import numpy as np
import pytest

from lrtune.cli import main
from lrtune.data import mnist
from lrtune.data.download import DownloadError, RemoteFile, cache_dir
from lrtune.data.idx import write_idx


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (base URL, folder, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []
    handler = type("Handler", (_Quiet,), {"requests": seen})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, seen
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LRTUNE_CACHE", str(folder))
    return folder


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def tiny_dataset(root, base_url, n_train=12, n_test=4, corrupt=None):
    """Four small IDX files in ``root`` and an IdxDataset whose hashes match them."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    files = {}
    for name, array in arrays.items():
        write_idx(root / name, array)
        digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
        if name == corrupt:
            digest = "0" * 64
        files[name] = RemoteFile(name, digest)
    dataset = dataclasses.replace(
        mnist.FASHION_MNIST, mirrors=(base_url,),
        train_images=files["train-images-idx3-ubyte.gz"],
        train_labels=files["train-labels-idx1-ubyte.gz"],
        test_images=files["t10k-images-idx3-ubyte.gz"],
        test_labels=files["t10k-labels-idx1-ubyte.gz"],
    )
    return dataset, arrays


def test_download_verifies_caches_and_loads(server, cache):
    base, root, seen = server
    dataset, arrays = tiny_dataset(root, base)
    splits = mnist.load_idx_dataset(dataset, n_valid=3)
    assert sorted(p.name for p in (cache / "fashion-mnist").iterdir()) == sorted(arrays)
    np.testing.assert_allclose(splits.valid[0][:, 0].numpy(),
                               arrays["train-images-idx3-ubyte.gz"][:3] / 255.0, rtol=1e-6)
    assert len(seen) == 4
    mnist.load_idx_dataset(dataset, n_valid=3)  # second load: from the cache, no request
    assert len(seen) == 4


def test_wrong_checksum_is_rejected_and_nothing_stays(server, cache):
    base, root, _ = server
    dataset, _ = tiny_dataset(root, base, corrupt="train-images-idx3-ubyte.gz")
    with pytest.raises(DownloadError, match=(r"file train-images-idx3-ubyte.gz failed "
                                             r"\(127.0.0.1:\d+: sha256 mismatch\)")) as err:
        mnist.load_idx_dataset(dataset, n_valid=3)
    assert "--data-dir" in str(err.value)
    assert "\n" not in str(err.value)
    folder = cache / "fashion-mnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_corrupt_cached_file_is_downloaded_again(server, cache):
    base, root, seen = server
    dataset, arrays = tiny_dataset(root, base)
    folder = cache / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    splits = mnist.load_idx_dataset(dataset, n_valid=3)
    np.testing.assert_array_equal(splits.test[1].numpy(), arrays["t10k-labels-idx1-ubyte.gz"])
    assert "/t10k-labels-idx1-ubyte.gz" in seen


def test_falls_back_to_the_next_mirror(server, cache):
    base, root, _ = server
    dataset, _ = tiny_dataset(root, base)
    dataset = dataclasses.replace(dataset, mirrors=(closed_port_url(), base + "nothing/", base))
    assert len(mnist.load_idx_dataset(dataset, n_valid=3).train[0]) == 9


def test_offline_cli_prints_one_line_and_exits_2(cache, monkeypatch, capsys):
    offline = dataclasses.replace(mnist.FASHION_MNIST, mirrors=(closed_port_url(),))
    monkeypatch.setattr(mnist, "FASHION_MNIST", offline)
    assert main(["find", "--dataset", "fashion-mnist"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(
        r"lrtune find: error: download of fashion-mnist file train-images-idx3-ubyte.gz failed "
        r"\(127.0.0.1:\d+: no connection\); get train-images-idx3-ubyte.gz, "
        r"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from "
        r"https://github.com/zalandoresearch/fashion-mnist and pass their folder with --data-dir "
        r"\(data_dir= in Python\)", lines[0])
    assert out == ""


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    import pooch

    monkeypatch.setenv("LRTUNE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LRTUNE_CACHE")
    assert cache_dir() == pooch.os_cache("lrtune")


@pytest.mark.parametrize("dataset", [mnist.MNIST, mnist.FASHION_MNIST])
def test_official_sources_are_pinned(dataset):
    remotes = [dataset.train_images, dataset.train_labels, dataset.test_images,
               dataset.test_labels]
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.sha256) for r in remotes)
    assert len({r.sha256 for r in remotes}) == 4
    assert all(m.endswith("/") for m in dataset.mirrors)


def test_not_found_on_every_mirror(server, cache):
    base, root, _ = server
    dataset, _ = tiny_dataset(root, base)
    dataset = dataclasses.replace(dataset, mirrors=(base + "nothing/",))
    with pytest.raises(DownloadError, match=r"\(127.0.0.1:\d+: HTTP 404\)"):
        mnist.load_idx_dataset(dataset, n_valid=3)
