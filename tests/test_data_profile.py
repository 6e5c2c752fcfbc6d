"""The LDAM-DRW long-tailed profile and subset selection."""

import itertools

import numpy as np
import pytest

from ltkd.data import long_tailed_counts, select_long_tailed
from ltkd.errors import DataError


@pytest.mark.parametrize(("gamma", "total"), [(100, 10_847), (20, 15_907), (10, 19_573)])
def test_cifar100_totals(gamma, total):
    counts = long_tailed_counts(500, 100, gamma)
    assert sum(counts) == total
    assert counts[0] == 500 and counts[-1] == int(500 / gamma)
    assert all(a >= b for a, b in itertools.pairwise(counts))


def test_profile_formula_and_balanced_case():
    assert long_tailed_counts(1300, 1000, 10) == [int(1300 * 10 ** (-c / 999)) for c in range(1000)]
    assert long_tailed_counts(7, 5, 1) == [7] * 5


@pytest.mark.parametrize(("args", "field"), [((500, 100, 0.5), "imbalance_factor"),
                                             ((500, 100, float("nan")), "imbalance_factor"),
                                             ((0, 100, 10), "n_max"), ((500, 1, 10), "num_classes")])
def test_profile_rejects_bad_arguments(args, field):
    with pytest.raises(ValueError, match=field):
        long_tailed_counts(*args)


def _ldam_reference(labels, counts, seed):
    """LDAM-DRW's IMBALANCECIFAR100.gen_imbalanced_data, verbatim apart from returning the indices."""
    np.random.seed(seed)
    targets_np = np.array(labels, dtype=np.int64)
    classes = np.unique(targets_np)
    selected = []
    for the_class, the_img_num in zip(classes, counts, strict=False):
        idx = np.where(targets_np == the_class)[0]
        np.random.shuffle(idx)
        selected.append(idx[:the_img_num])
    return np.concatenate(selected)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_selection_matches_ldam_drw(seed):
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(20), 30))
    counts = long_tailed_counts(30, 20, 10)
    state = np.random.get_state()
    got = select_long_tailed(labels.tolist(), counts, seed)
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global numpy state is untouched
    expected = _ldam_reference(labels, counts, seed)
    assert np.array_equal(got, expected)
    assert np.bincount(labels[got]).tolist() == counts
    assert np.all(np.diff(labels[got]) >= 0)  # class order


def test_selection_is_deterministic_and_independent_of_global_state():
    labels = np.repeat(np.arange(5), 10)
    np.random.seed(99)
    np.random.rand(17)
    first = select_long_tailed(labels, [10, 8, 5, 3, 1], seed=4)
    np.random.seed(7)
    assert np.array_equal(first, select_long_tailed(labels, [10, 8, 5, 3, 1], seed=4))
    assert not np.array_equal(first, select_long_tailed(labels, [10, 8, 5, 3, 1], seed=5))


def test_short_class_and_bad_labels_are_errors():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.raises(DataError, match=r"class 1: has 2 images; .* needs 3"):
        select_long_tailed(labels, [3, 3, 1], seed=0)
    with pytest.raises(DataError, match="label 2"):
        select_long_tailed(labels, [3, 2], seed=0)
