import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrtune.data import TensorBatches, as_batches


def data(n=10):
    return torch.arange(float(n)).unsqueeze(1).repeat(1, 3), torch.arange(n)


def test_each_pass_is_a_seeded_permutation_covering_every_sample():
    X, y = data(10)
    batches = TensorBatches(X, y, batch_size=4, seed=5)
    first = torch.cat([yb for _, yb in batches])
    second = torch.cat([yb for _, yb in batches])
    assert sorted(first.tolist()) == list(range(10)) == sorted(second.tolist())
    assert not torch.equal(first, second)  # a new order every pass
    again = TensorBatches(X, y, batch_size=4, seed=5)
    assert torch.equal(torch.cat([yb for _, yb in again]), first)
    for xb, yb in TensorBatches(X, y, batch_size=4, seed=1):
        assert torch.equal(xb[:, 0].long(), yb)  # rows stay paired


def test_drop_last_and_len():
    X, y = data(10)
    assert [len(yb) for _, yb in TensorBatches(X, y, 4, drop_last=True)] == [4, 4]
    assert len(TensorBatches(X, y, 4, drop_last=True)) == 2
    assert len(TensorBatches(X, y, 4)) == 3
    assert [len(yb) for _, yb in TensorBatches(X, y, 4, shuffle=False)] == [4, 4, 2]


def test_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    list(TensorBatches(*data(), batch_size=3))
    assert torch.equal(state, torch.get_rng_state())


def test_state_dict_replays_the_same_pass():
    batches = TensorBatches(*data(), batch_size=3, seed=2)
    list(batches)
    state = batches.state_dict()
    expected = torch.cat([yb for _, yb in batches])
    resumed = TensorBatches(*data(), batch_size=3, seed=2)
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([yb for _, yb in resumed]), expected)


def test_as_batches_accepts_pairs_and_any_dataloader():
    X, y = data()
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    assert as_batches(loader, 32) is loader
    wrapped = as_batches((X, y), 4, shuffle=False, drop_last=True)
    assert isinstance(wrapped, TensorBatches)
    assert len(wrapped) == 2
    assert as_batches(wrapped, 8) is wrapped
    with pytest.raises(TypeError, match=r"or an \(X, y\) pair of tensors, got dict"):
        as_batches({"X": X}, 4)


def test_a_numpy_pair_is_named_as_such():
    # scikit-learn's (X, y) arrays were taken for two batches, X and y, and refused later with
    # advice to write a step
    X, y = data()
    with pytest.raises(TypeError, match=r"\(X, y\) pair of ndarray and ndarray; pass torch "
                                        r"tensors: \(torch.as_tensor\(X\)"):
        as_batches((X.numpy(), y.numpy()), 4)
    with pytest.raises(TypeError, match="pair of Tensor and ndarray"):
        as_batches([X, y.numpy()], 4)


def test_rejects_bad_arguments():
    X, y = data()
    with pytest.raises(ValueError, match="different lengths: 10 and 9"):
        TensorBatches(X, y[:9], 2)
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        TensorBatches(X, y, 0)
    for bad in (2.5, "4", True):  # used to fail later with a TypeError, or batch by 1
        with pytest.raises(ValueError, match=f"batch_size must be an integer > 0, got {bad!r}"):
            TensorBatches(X, y, bad)
    assert len(TensorBatches(X, y, np.int64(4))) == 3
    with pytest.raises(TypeError, match="must be torch tensors"):
        TensorBatches(X.numpy(), y, 2)
