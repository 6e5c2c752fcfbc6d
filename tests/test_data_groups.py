"""Head / medium / tail groups by training count."""

import pytest
import torch

from ltkd.data import GROUP_NAMES, class_to_group, long_tailed_counts, split_groups


@pytest.mark.parametrize(("num_classes", "sizes"), [(100, [33, 34, 33]), (200, [66, 68, 66]),
                                                    (1000, [330, 340, 330])])
def test_paper_group_sizes(num_classes, sizes):
    groups = split_groups(long_tailed_counts(500, num_classes, 100))
    assert [len(g) for g in groups] == sizes
    assert sorted(c for g in groups for c in g) == list(range(num_classes))
    assert len(GROUP_NAMES) == len(groups)


def test_sorted_by_count_with_ties_by_label():
    counts = [5, 9, 5, 1, 9, 3]
    groups = split_groups(counts, (0.5, 0.5))
    assert groups == [[1, 4, 0], [2, 5, 3]]


@pytest.mark.parametrize(("fractions", "sizes"), [((0.5, 0.5), [50, 50]), ((0.2,) * 5, [20] * 5),
                                                  ((1.0,), [100])])
def test_any_number_of_groups(fractions, sizes):
    counts = long_tailed_counts(500, 100, 10)
    groups = split_groups(counts, fractions)
    assert [len(g) for g in groups] == sizes
    mapping = class_to_group(groups, 100)
    assert mapping.dtype == torch.long and mapping.shape == (100,)
    assert all(mapping[c] == g for g, members in enumerate(groups) for c in members)


@pytest.mark.parametrize(("fractions", "match"), [((0.3, 0.3, 0.3), "sums to"), ((0.5, 0.6, -0.1), "> 0"),
                                                  ((), "empty list"), ((0.995, 0.004, 0.001), "leaves a group empty")])
def test_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        split_groups(long_tailed_counts(500, 100, 10), fractions)


def test_class_to_group_requires_a_partition():
    with pytest.raises(ValueError, match="in no group"):
        class_to_group([[0, 1], [2]], 4)
    with pytest.raises(ValueError, match="two groups"):
        class_to_group([[0, 1], [1, 2, 3]], 4)
