"""Is a data set where its loader will look, in the layout it reads? Checked without torch (a
preflight on every node, `sweeper validate --check-data` on this machine), before any trial.

``missing(dataset)`` takes a resolved config's ``dataset`` mapping and returns None when the
loader will find its files, else one line naming ``dataset.root`` (as it expands here) and what
is missing; ``LAYOUT[name]`` says the layout in words. ``ensure(dataset)`` also fetches a set
that may be downloaded (``download: true``), once per node, as a trial would.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

DEFAULT_ROOT = "~/data/{name}"  # cifar's, when dataset.root is not given (trainables/data/cifar.py)

_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                        "data_batch_5", "test_batch", "batches.meta")),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
}

LAYOUT = {
    "cifar10": "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} "
               "(torchvision's CIFAR10: the python version of the archive, unpacked)",
    "cifar100": "ROOT/cifar-100-python/{train, test, meta} (torchvision's CIFAR100, unpacked)",
    "imagenet": "ROOT/train/<class>/<image> and ROOT/val/<class>/<image>, the same class folders in both "
                "(ILSVRC-2012's val images sorted into class folders)",
    "digits": "nothing: scikit-learn ships it",
    "synthetic": "nothing: drawn in memory",
}


def root_of(dataset: Mapping[str, Any]) -> str | None:
    """``dataset.root`` as the loader expands it on this machine (``~`` is this user's home)."""
    root = dataset.get("root")
    if not root and dataset["name"] in _CIFAR_FILES:
        root = DEFAULT_ROOT.format(name=dataset["name"])
    return os.path.expanduser(root) if root else None


def missing(dataset: Mapping[str, Any]) -> str | None:
    """None when the loader will find the set, else what is missing (one line, no layout)."""
    name = dataset["name"]
    root = root_of(dataset)
    if name in _CIFAR_FILES:
        folder, files = _CIFAR_FILES[name]
        absent = [f for f in files if not os.path.isfile(os.path.join(root, folder, f))]
        if absent:
            return f"{os.path.join(root, folder)}/ lacks {', '.join(absent)}"
        return None
    if name == "imagenet":
        return _imagenet_missing(root)
    return None  # digits, synthetic: nothing on disk


def _imagenet_missing(root: str | None) -> str | None:
    if not root:
        return "no dataset.root given"
    classes = {}
    for split in ("train", "val"):
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            return f"{folder}/ does not exist"
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if not e.name.startswith(".")]
        classes[split] = {n for n in names if os.path.isdir(os.path.join(folder, n))}
        if not classes[split]:
            loose = f" ({len(names)} loose files: sort them into class folders)" if names else ""
            return f"{folder}/ has no class folders{loose}"
    if classes["train"] != classes["val"]:
        only = sorted(classes["train"] ^ classes["val"])
        return f"train/ and val/ hold different class folders ({len(only)} differ, e.g. {only[0]})"
    return None


def describe(dataset: Mapping[str, Any], where: str = "") -> str | None:
    """One line for a user: None when the set is there, else ``dataset.root`` named with what is
    missing, ``where`` (a node) and the layout the loader expects."""
    problem = missing(dataset)
    if problem is None:
        return None
    at = f" on {where}" if where else ""
    how = "" if dataset.get("download") else _hint(dataset["name"])
    return (f"dataset.root {dataset.get('root') or root_of(dataset)!r}{at}: {problem}; "
            f"expected {LAYOUT[dataset['name']]}{how}")


def _hint(name: str) -> str:
    return "; or set dataset.download: true" if name in _CIFAR_FILES else ""


def ensure(dataset: Mapping[str, Any], where: str = "",
           prepare: Callable[[Mapping[str, Any]], None] | None = None) -> str | None:
    """``describe``, after fetching a set that may be downloaded (``download: true``) once on
    this node the way a trial would (``prepare``: trainables' own, by default)."""
    if dataset.get("download") and dataset["name"] in _CIFAR_FILES and missing(dataset) is not None:
        try:
            (prepare or download)(dataset)
        except (OSError, RuntimeError) as e:  # no network, a full disk: said in the line below
            return f"{describe(dataset, where)} (downloading it failed: {type(e).__name__}: {e})"
    return describe(dataset, where)


def download(dataset: Mapping[str, Any]) -> None:
    """torchvision's download and extract under the per-node lock trials take (prepare.py)."""
    from torchvision import datasets  # lazy: the checks above need no torch

    from trainables.data.prepare import prepared_once

    root = root_of(dataset)
    cls = datasets.CIFAR10 if dataset["name"] == "cifar10" else datasets.CIFAR100
    prepared_once(root, dataset["name"], lambda: cls(root, train=True, download=True))
