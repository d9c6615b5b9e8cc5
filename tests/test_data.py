"""The data pipeline: real on-disk formats through the real loaders, on-device augmentation,
and epochs that depend on the loop's generator alone. Nothing is downloaded."""

from __future__ import annotations

import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.config import ConfigError, DatasetConfig
from trainables.data import load_data
from trainables.data.source import PAD, DataSource

CPU = torch.device("cpu")


# --- writing tiny data sets in the real on-disk formats ------------------------------------


def write_cifar10(root, train_images, train_labels, test_images, test_labels):
    """cifar-10-batches-py/ as the real archive unpacks: five training batches, a test batch and
    batches.meta, each a pickle whose b'data' is uint8 [N, 3072] (all red, then green, then
    blue, row-major) and b'labels' a list of ints. (The real files were pickled by Python 2, whose
    str keys load as str under torchvision's encoding='latin1'; str keys here load the same way.)"""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(train_images)), 5)
    for number, chunk in enumerate(chunks, start=1):
        _pickle(folder / f"data_batch_{number}", {"batch_label": f"training batch {number} of 5",
                                                  "data": _rows(train_images[chunk]),
                                                  "labels": [int(train_labels[i]) for i in chunk]})
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": _rows(test_images),
                                    "labels": [int(v) for v in test_labels]})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                      "num_cases_per_batch": len(chunks[0]), "num_vis": 3072})


def write_cifar100(root, train_images, train_labels, test_images, test_labels):
    """cifar-100-python/ with train, test (b'fine_labels', b'coarse_labels') and meta."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        _pickle(folder / name, {"data": _rows(images), "fine_labels": [int(v) for v in labels],
                                "coarse_labels": [int(v) // 5 for v in labels]})
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})


def _rows(images_nhwc):
    return np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), 3072))


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def random_images(count, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def position_coded_images(count):
    """Red = row + 1, green = column + 1, blue = image number + 1 (so padding, 0, is distinct):
    every pixel of every image says where it came from."""
    rows = np.arange(32)[:, None].repeat(32, 1) + 1
    cols = np.arange(32)[None, :].repeat(32, 0) + 1
    images = np.zeros((count, 32, 32, 3), dtype=np.uint8)
    images[..., 0], images[..., 1] = rows, cols
    images[..., 2] = (np.arange(count) + 1)[:, None, None]
    return images


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks the md5 sums of the real CIFAR files, which tiny files cannot match.
    Keep its check that every file exists, drop only the checksum (it is called both by
    `_check_integrity` and by `_load_meta`, hence the module-level patch)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def cifar_cfg(root, name="cifar10", **kw):
    return DatasetConfig(name=name, root=str(root), **kw)


def pixels(source, images):
    """Undo the normalisation: back to the uint8 pixels the batch was made of."""
    mean = torch.tensor(source.mean).view(1, -1, 1, 1)
    std = torch.tensor(source.std).view(1, -1, 1, 1)
    return ((images * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


def epoch(source, batch_size, seed):
    return list(source.train_batches(batch_size, torch.Generator().manual_seed(seed)))


# --- CIFAR -----------------------------------------------------------------------------------


def test_cifar10_loads_the_real_format_onto_the_device(tmp_path, skip_md5):
    train, test = random_images(50, seed=1), random_images(20, seed=2)
    train_labels, test_labels = np.arange(50) % 10, (np.arange(20) * 3) % 10
    write_cifar10(tmp_path, train, train_labels, test, test_labels)

    source = load_data(cifar_cfg(tmp_path), CPU, seed=0)

    assert isinstance(source, DataSource)
    assert (source.name, source.num_classes, source.image_size) == ("cifar10", 10, 32)
    assert (source.num_train, source.num_test) == (50, 20)
    assert source.flip is True
    images, labels = next(iter(source.train_batches(16, torch.Generator().manual_seed(0))))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32 and images.device == CPU
    assert labels.dtype == torch.int64 and labels.device == CPU
    assert 0 <= labels.min() and labels.max() < 10
    # The test set comes back in file order, unaugmented, pixel for pixel in NCHW.
    test_images, test_got = zip(*source.test_batches(8))
    assert torch.equal(torch.cat(test_got), torch.as_tensor(test_labels))
    assert torch.equal(pixels(source, torch.cat(test_images)), torch.from_numpy(test).permute(0, 3, 1, 2))


def test_cifar100_reads_fine_labels(tmp_path, skip_md5):
    labels = np.arange(30) * 3 % 100
    write_cifar100(tmp_path, random_images(30, seed=3), labels, random_images(10, seed=4), labels[:10])

    source = load_data(cifar_cfg(tmp_path, "cifar100"), CPU, seed=0)

    assert (source.num_classes, source.num_train, source.num_test) == (100, 30, 10)
    assert torch.equal(torch.cat([y for _, y in source.test_batches(4)]), torch.as_tensor(labels[:10]))
    train_labels = torch.cat([y for _, y in epoch(source, 7, seed=0)])
    assert sorted(train_labels.tolist()) == sorted(labels.tolist())


PUBLISHED_MEAN_STD = {  # the usual constants, written out here independently of the code under test
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@pytest.mark.parametrize("name, writer", [("cifar10", write_cifar10), ("cifar100", write_cifar100)])
def test_cifar_is_normalised_with_the_data_sets_channel_statistics(tmp_path, skip_md5, name, writer):
    # Images drawn with the data set's published channel statistics come out near N(0, 1).
    mean, std = (np.array(v) * 255 for v in PUBLISHED_MEAN_STD[name])
    rng = np.random.default_rng(5)
    images = rng.normal(mean, std, (40, 32, 32, 3)).round().clip(0, 255).astype(np.uint8)
    writer(tmp_path, images, np.arange(40) % 10, images, np.arange(40) % 10)

    source = load_data(cifar_cfg(tmp_path, name), CPU, seed=0)
    normalised = torch.cat([x for x, _ in source.test_batches(16)])

    per_channel_mean = normalised.mean(dim=(0, 2, 3))
    per_channel_std = normalised.std(dim=(0, 2, 3))
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=0.05), per_channel_mean
    assert torch.allclose(per_channel_std, torch.ones(3), atol=0.1), per_channel_std


def test_crops_are_shifted_windows_of_the_padded_image_and_about_half_are_flipped(tmp_path, skip_md5):
    originals = position_coded_images(64)
    write_cifar10(tmp_path, originals, np.arange(64) % 10, originals[:10], np.arange(10))
    source = load_data(cifar_cfg(tmp_path), CPU, seed=0)
    padded = torch.nn.functional.pad(torch.from_numpy(originals).permute(0, 3, 1, 2), (PAD,) * 4)
    windows = padded.unfold(2, 32, 1).unfold(3, 32, 1).permute(0, 2, 3, 1, 4, 5)  # N, dy, dx, C, 32, 32

    offsets, flipped = [], []
    for seed in range(4):
        for images, labels in epoch(source, 32, seed):
            images = pixels(source, images)
            numbers = images[:, 2].flatten(1).max(1).values.long() - 1  # blue codes the image, padding is 0
            assert torch.equal(labels, numbers % 10)  # the label travels with its image
            candidates = windows[numbers]  # B, dy, dx, C, 32, 32
            plain = (candidates == images[:, None, None]).flatten(3).all(-1)  # B, dy, dx
            mirrored = (candidates == images.flip(-1)[:, None, None]).flatten(3).all(-1)
            matches = plain.flatten(1).sum(1) + mirrored.flatten(1).sum(1)
            assert (matches == 1).all(), "every crop is exactly one window of its padded image"
            offsets += (plain | mirrored).flatten(1).nonzero()[:, 1].tolist()
            flipped += mirrored.flatten(1).any(1).tolist()

    offsets = [divmod(i, 2 * PAD + 1) for i in offsets]
    assert len(flipped) == 4 * 64
    assert {dy for dy, _ in offsets} == set(range(2 * PAD + 1))
    assert {dx for _, dx in offsets} == set(range(2 * PAD + 1))
    assert 0.4 <= sum(flipped) / len(flipped) <= 0.6


def test_train_size_and_test_size_keep_the_first_images_and_the_last_partial_batch(tmp_path, skip_md5):
    train, test = random_images(50, seed=6), random_images(20, seed=7)
    write_cifar10(tmp_path, train, np.arange(50) % 10, test, np.arange(20) % 7)

    source = load_data(cifar_cfg(tmp_path, train_size=37, test_size=9), CPU, seed=0)

    assert (source.num_train, source.num_test) == (37, 9)
    assert [len(y) for _, y in epoch(source, 16, seed=0)] == [16, 16, 5]
    assert source.steps_per_epoch(16) == 3 and source.steps_per_epoch(37) == 1
    test_batches = list(source.test_batches(4))
    assert [len(y) for _, y in test_batches] == [4, 4, 1]
    assert torch.cat([y for _, y in test_batches]).tolist() == (np.arange(9) % 7).tolist()
    no_crops = load_data(cifar_cfg(tmp_path, train_size=37), CPU, seed=0, augment=False)
    seen = pixels(no_crops, torch.cat([x for x, _ in epoch(no_crops, 16, seed=0)]))
    first_37 = torch.from_numpy(train[:37]).permute(0, 3, 1, 2)
    assert sorted(map(bytes, seen.flatten(1).numpy())) == sorted(map(bytes, first_37.flatten(1).numpy()))


def test_cifar_refuses_another_image_size(tmp_path):
    with pytest.raises(ConfigError, match="dataset.image_size"):
        load_data(cifar_cfg(tmp_path, image_size=64), CPU, seed=0)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_a_missing_cifar_root_is_one_clear_error_naming_the_folder(tmp_path, name):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        load_data(cifar_cfg(root, name), CPU, seed=0)
    message = str(error.value)
    assert str(root) in message and name in message and "dataset.download" in message


def test_a_failed_download_is_one_clear_error_naming_the_folder(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "download_and_extract_archive", no_network)
    with pytest.raises(FileNotFoundError) as error:
        load_data(cifar_cfg(tmp_path, download=True), CPU, seed=0)
    assert str(tmp_path) in str(error.value) and "download" in str(error.value)


# --- the same generator seed, the same epoch ---------------------------------------------------


def test_an_epoch_depends_only_on_its_generator_seed():
    source = load_data(DatasetConfig(name="synthetic", train_size=100, test_size=10), CPU, seed=0)

    torch.manual_seed(1)
    first = epoch(source, 32, seed=7)
    epoch(source, 32, seed=8)  # whatever ran before must not matter
    torch.manual_seed(2)
    again = epoch(source, 32, seed=7)
    other = epoch(source, 32, seed=8)

    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(torch.cat([x for x, _ in first]), torch.cat([x for x, _ in other]))
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in other]))


def test_without_augmentation_an_epoch_is_the_training_set_reordered():
    cfg = DatasetConfig(name="synthetic", train_size=64)
    plain = load_data(cfg, CPU, seed=0, augment=False)
    augmented = load_data(cfg, CPU, seed=0)

    def image_set(source, seed):
        images, labels = (torch.cat(t) for t in zip(*epoch(source, 20, seed)))
        return sorted(zip(map(bytes, pixels(source, images).flatten(1).numpy()), labels.tolist()))

    once, twice = image_set(plain, 3), image_set(plain, 4)
    assert once == twice and len({image for image, _ in once}) == 64  # each image once, unchanged
    assert image_set(augmented, 3) != once  # while augmentation changes them


# --- digits ------------------------------------------------------------------------------------


def test_digits_split_is_fixed_disjoint_and_independent_of_the_trial_seed():
    from sklearn.datasets import load_digits

    from trainables.data.digits import split

    train_idx, test_idx = split(1797)
    assert (len(train_idx), len(test_idx)) == (1437, 360)
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    assert set(train_idx.tolist()) | set(test_idx.tolist()) == set(range(1797))

    one = load_data(DatasetConfig(name="digits"), CPU, seed=0)
    other = load_data(DatasetConfig(name="digits"), CPU, seed=5)
    assert (one.num_train, one.num_test, one.num_classes, one.image_size) == (1437, 360, 10, 32)
    test_one, labels_one = (torch.cat(t) for t in zip(*one.test_batches(100)))
    test_other, labels_other = (torch.cat(t) for t in zip(*other.test_batches(100)))
    assert torch.equal(test_one, test_other) and torch.equal(labels_one, labels_other)
    assert labels_one.tolist() == load_digits().target[test_idx.numpy()].tolist()
    # normalised with the training split's statistics: about N(0, 1) over the test images too
    assert abs(test_one.mean()) < 0.1 and abs(test_one.std() - 1) < 0.1
    assert test_one.shape == (360, 3, 32, 32) and torch.equal(test_one[:, 0], test_one[:, 2])


def test_digits_are_read_from_scikit_learns_file_exactly_as_scikit_learn_gives_them_without_importing_it():
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from trainables.data.digits import digits_arrays

    images, labels = digits_arrays()
    bunch = load_digits()
    assert images.shape == (1797, 8, 8) and np.array_equal(images, bunch.images)
    assert np.array_equal(labels, bunch.target) and labels.dtype == bunch.target.dtype
    fresh = subprocess.run([sys.executable, "-c", "import sys; from trainables.data.digits import digits_arrays; "
                            "digits_arrays(); print('sklearn' in sys.modules)"], capture_output=True, text=True)
    assert fresh.stdout.strip() == "False", fresh.stderr


def test_digits_are_upsampled_to_the_configured_size_and_capped():
    source = load_data(DatasetConfig(name="digits", image_size=16, train_size=100, test_size=30), CPU, seed=0)
    images, labels = next(iter(source.train_batches(64, torch.Generator().manual_seed(0))))
    assert images.shape == (64, 3, 16, 16) and labels.dtype == torch.int64
    assert (source.num_train, source.num_test) == (100, 30)


def test_digits_are_cropped_but_never_mirrored():
    cfg = DatasetConfig(name="digits", train_size=300)
    augmented = load_data(cfg, CPU, seed=0)
    plain = load_data(cfg, CPU, seed=0, augment=False)
    # The same generator seed draws the same order first, so image i of both epochs is the same digit.
    cropped = pixels(augmented, torch.cat([x for x, _ in epoch(augmented, 300, seed=1)]))
    originals = pixels(plain, torch.cat([x for x, _ in epoch(plain, 300, seed=1)]))
    windows = torch.nn.functional.pad(originals, (PAD,) * 4).unfold(2, 32, 1).unfold(3, 32, 1)
    windows = windows.permute(0, 2, 3, 1, 4, 5).flatten(1, 2)  # N, 81 offsets, C, 32, 32

    unmirrored = (windows == cropped[:, None]).flatten(2).all(-1)  # N x 81
    assert unmirrored.any(-1).all(), "every digit is an unmirrored window of its padded original"
    centre = (2 * PAD + 1) * PAD + PAD
    assert (~unmirrored[:, centre]).float().mean() > 0.5, "most digits are actually shifted"
    assert augmented.flip is False


# --- synthetic ------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_learnable():
    cfg = DatasetConfig(name="synthetic")
    source = load_data(cfg, CPU, seed=0)
    assert (source.num_train, source.num_test, source.num_classes, source.image_size) == (512, 256, 10, 32)
    test_a = torch.cat([x for x, _ in source.test_batches(100)])
    test_b = torch.cat([x for x, _ in load_data(cfg, CPU, seed=9).test_batches(100)])
    assert torch.equal(test_a, test_b), "the images never depend on the trial seed"

    plain = load_data(cfg, CPU, seed=0, augment=False)
    train_x, train_y = (torch.cat(t) for t in zip(*epoch(plain, 512, seed=0)))
    test_y = torch.cat([y for _, y in source.test_batches(100)])
    class_means = torch.stack([train_x[train_y == k].mean(0) for k in range(10)]).flatten(1)
    predicted = torch.cdist(test_a.flatten(1), class_means).argmin(1)
    assert (predicted == test_y).float().mean() > 0.9, "a nearest-class-mean classifier already separates it"
    assert abs(train_x.mean()) < 0.05 and abs(train_x.std() - 1) < 0.05


# --- ImageFolder (ImageNet's format) ----------------------------------------------------------


def write_image_folder(root, classes=("ant", "bee", "cat"), per_class=(5, 2)):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                size = (40 + 7 * i, 30 + 5 * k)  # mixed sizes and aspect ratios, as in ImageNet
                array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                suffix = "png" if i % 2 else "jpg"
                Image.fromarray(array).save(root / split / name / f"{i}.{suffix}")


def test_image_folder_streams_normalised_batches(tmp_path):
    write_image_folder(tmp_path)
    # one flat image of the ImageNet mean colour: Normalize must map it to about 0
    Image.new("RGB", (50, 50), (124, 116, 104)).save(tmp_path / "val" / "bee" / "mean.png")
    cfg = DatasetConfig(name="imagenet", root=str(tmp_path), image_size=16, num_workers=0)

    source = load_data(cfg, CPU, seed=0)

    assert (source.num_classes, source.image_size, source.num_train, source.num_test) == (3, 16, 15, 7)
    batches = epoch(source, 4, seed=0)
    assert [len(y) for _, y in batches] == [4, 4, 4, 3] and source.steps_per_epoch(4) == 4
    images, labels = batches[0]
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and images.device == CPU
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 3
    test_images, test_labels = (torch.cat(t) for t in zip(*source.test_batches(5)))
    assert test_labels.tolist() == [0, 0, 1, 1, 1, 2, 2]  # fixed order: by class, then file name
    mean_image = test_images[4]  # val/bee: 0.jpg, 1.png, mean.png
    assert mean_image.abs().max() < 0.02
    # the order of an epoch is drawn from the generator alone
    order = [torch.cat([y for _, y in epoch(source, 4, seed=s)]).tolist() for s in (3, 3, 4)]
    assert order[0] == order[1] and sorted(order[0]) == sorted(order[2]) == [0] * 5 + [1] * 5 + [2] * 5


def test_image_folder_with_persistent_workers_and_a_spread_cap(tmp_path):
    write_image_folder(tmp_path)
    cfg = DatasetConfig(name="imagenet", root=str(tmp_path), image_size=8, num_workers=1,
                        train_size=6, test_size=3)
    source = load_data(cfg, CPU, seed=0)
    assert (source.num_train, source.num_test) == (6, 3)
    for seed in (0, 1):  # two epochs through the same persistent worker
        labels = torch.cat([y for _, y in epoch(source, 4, seed)])
        assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2], "a cap keeps every class, not the first N"
    assert torch.cat([y for _, y in source.test_batches(2)]).tolist() == [0, 1, 2]


def test_image_folder_without_val_names_the_missing_folder(tmp_path):
    (tmp_path / "train" / "ant").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="val/"):
        load_data(DatasetConfig(name="imagenet", root=str(tmp_path)), CPU, seed=0)


IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # written out independently


def test_open_lth_fidelity_normalises_cifar_with_imagenet_statistics(tmp_path, skip_md5):
    # open_lth's cifar10.py normalises with ImageNet's constants; train.fidelity: open_lth follows it.
    from trainables.config import TrialConfig
    from trainables.loop import build_setup

    images = random_images(20, seed=6)
    write_cifar10(tmp_path, images, np.arange(20) % 10, images, np.arange(20) % 10)
    config = {"dataset": {"name": "cifar10", "root": str(tmp_path)}, "model": {"family": "cifar_resnet", "depth": 8},
              "train": {"epochs": 1, "device": "cpu"}}
    ours = build_setup(TrialConfig.from_dict(config)).data
    theirs = build_setup(TrialConfig.from_dict({**config, "train": {**config["train"], "fidelity": "open_lth"}})).data

    assert (ours.mean, ours.std) == PUBLISHED_MEAN_STD["cifar10"]
    assert (theirs.mean, theirs.std) == IMAGENET_MEAN_STD
    first = torch.from_numpy(images[:1]).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET_MEAN_STD)
    got = next(iter(theirs.test_batches(1)))[0]
    assert torch.allclose(got, (first - mean) / std, atol=1e-5)


def _spec_accepts(data_set: str) -> bool:
    from sweeper.core.errors import SpecError
    from sweeper.spec import parse_spec

    model = "{family: imagenet_resnet, depth: 18}" if data_set == "imagenet" else "{family: cifar_resnet, depth: 8}"
    try:
        parse_spec(f"name: a\ndataset: {{name: {data_set}}}\nmodel: {model}\ntrain: {{epochs: 1}}\n"
                   "grid: {seed: [0]}\n")
    except SpecError as e:  # another setting's error (imagenet's root) means the name was taken
        return "dataset.name" not in str(e)
    return True


def test_the_data_set_registry_is_the_words_the_facts_and_what_a_spec_accepts():
    from trainables.data import LOADERS
    from trainables.data.facts import DATA_SETS
    from trainables.names import DATASETS

    assert tuple(LOADERS) == DATASETS == tuple(DATA_SETS)
    assert all(_spec_accepts(name) for name in LOADERS)
    assert not _spec_accepts("mnist")
