"""A cold node: eight trials that start together want CIFAR-10 with download: true. torchvision's
real download and extract code runs against a small archive in the real CIFAR-10 format served
from 127.0.0.1; the server must see exactly one download and every trial must get the data."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import tarfile
import textwrap
import threading
import time

import pytest

from test_data import random_images, write_cifar10

pytestmark = pytest.mark.slow

TRIALS = 8

# One trial's process: point torchvision's CIFAR10 class at the local archive (its url and md5
# sums, nothing else), wait for the start signal, then load the data as a trial does.
TRIAL = textwrap.dedent("""
    import json, os, sys, time
    import torch
    from torchvision import datasets
    from trainables.config import DatasetConfig
    from trainables.data import load_data

    url, sums, root, go = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    datasets.CIFAR10.url = url
    datasets.CIFAR10.tgz_md5 = sums["archive"]
    datasets.CIFAR10.train_list = [[n, sums[n]] for n, _ in datasets.CIFAR10.train_list]
    datasets.CIFAR10.test_list = [[n, sums[n]] for n, _ in datasets.CIFAR10.test_list]
    datasets.CIFAR10.meta = {**datasets.CIFAR10.meta, "md5": sums["batches.meta"]}
    while not os.path.exists(go):
        time.sleep(0.01)
    source = load_data(DatasetConfig(name="cifar10", root=root, download=True), torch.device("cpu"), seed=0)
    train = sum(len(y) for _, y in source.train_batches(1000, torch.Generator().manual_seed(0)))
    test = sum(len(y) for _, y in source.test_batches(1000))
    print(json.dumps({"train": train, "test": test}))
""")


def _archive(folder):
    """cifar-10-python.tar.gz holding cifar-10-batches-py/ as the real one does; md5 sums."""
    staging = folder / "staging"
    write_cifar10(staging, random_images(50, seed=1), [i % 10 for i in range(50)],
                  random_images(20, seed=2), [i % 10 for i in range(20)])
    archive = folder / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (staging / "cifar-10-batches-py").iterdir()}
    sums["archive"] = hashlib.md5(archive.read_bytes()).hexdigest()
    return archive, sums


class _CountingServer:
    def __init__(self, directory):
        downloads = self.downloads = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kw):
                super().__init__(*args, directory=str(directory), **kw)

            def do_GET(self):
                # torchvision first probes for redirects with a GET that carries the header
                # "Method: HEAD" and reads no body; only the other GET is a download
                downloads.append((self.path, self.headers.get("Method") == "HEAD"))
                time.sleep(0.5)  # a slow link: late starters arrive while the first downloads
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"


def test_eight_trials_on_a_cold_node_download_and_unpack_cifar10_once(tmp_path):
    import json

    archive, sums = _archive(tmp_path)
    root = tmp_path / "data" / "cifar10"
    go = tmp_path / "go"
    with _CountingServer(archive.parent) as server:
        trials = [subprocess.Popen([sys.executable, "-c", TRIAL, server.url, json.dumps(sums), str(root), str(go)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(TRIALS)]
        time.sleep(1)
        go.write_text("go")  # all eight start loading at once
        results = [t.communicate(timeout=600) for t in trials]
    for trial, (out, err) in zip(trials, results):
        assert trial.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1]) == {"train": 50, "test": 20}
    assert [path for path, probe in server.downloads if not probe] == ["/cifar-10-python.tar.gz"]
    assert len(server.downloads) == 2  # and one redirect probe: one trial went to the network
    assert (root / ".prepared-cifar10").exists()
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(n for n in sums if n != "archive")
