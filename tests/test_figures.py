"""The figures a person looks at: the per-class plot and the table figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from ltkd.reporting import per_class_figure
from ltkd.results import Cell, table_figure

COUNTS = [500 // (1 + c) for c in range(10)]
GROUPS = {"head": [0, 1, 2], "medium": [3, 4, 5, 6], "tail": [7, 8, 9]}


def test_per_class_plot_draws_the_training_counts_and_keeps_the_legend_off_the_group_labels():
    fig = per_class_figure(COUNTS, GROUPS, {"teacher": [90.0] * 10, "student": [100.0] * 10}, "t")
    ax, counts = fig.axes
    assert counts.get_ylabel() == "training images"
    curve = [line for line in counts.get_lines() if line.get_label() == "training images"]
    assert len(curve) == 1 and list(curve[0].get_ydata()) == COUNTS  # sorted by count, on the right axis
    assert counts.get_ylim()[1] >= max(COUNTS)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["training images", "teacher", "student"]
    box = legend.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text() in GROUPS]
    assert len(labels) == 3
    assert not any(box.overlaps(t.get_window_extent(renderer)) for t in labels)
    for line in ax.get_lines():  # nor any accuracy curve
        assert not box.overlaps(line.get_window_extent(renderer))
    plt.close(fig)


def _cell(method: str, gamma: float, tail: float, overall: float) -> Cell:
    cell = Cell("cifar100_lt", gamma, "resnet20", "resnet8", method)
    cell.values["tail"].append(tail)
    cell.values["overall"].append(overall)
    return cell


def test_table_figure_with_every_tail_value_zero_has_a_plain_accuracy_axis_and_labelled_bars():
    cells = [_cell("teacher", 100, 0.0, 9.5), _cell("kd", 100, 0.0, 7.7), _cell("ltkd", 100, 0.0, 9.6),
             _cell("kd", 10, 0.0, 12.0)]  # ltkd and the teacher have no γ=10 run
    fig = table_figure(cells, "t")
    tail_ax, overall_ax = fig.axes
    low, high = tail_ax.get_ylim()
    assert low == 0 and high >= 1  # not an axis around 0 with negative "accuracies"
    assert all(tick >= 0 for tick in tail_ax.get_yticks() if low <= tick <= high)
    labels = [t.get_text() for t in tail_ax.texts]
    assert labels.count("0.0") == 4 and "" in labels  # every value shown, the missing cells left blank
    assert {t.get_text() for t in overall_ax.texts} >= {"9.5", "7.7", "9.6", "12.0"}
    assert overall_ax.get_ylim()[1] > 12.0
    assert [t.get_text() for t in tail_ax.get_xticklabels()] == ["γ=100", "γ=10"]
    plt.close(fig)


@pytest.mark.parametrize("tail", [0.0, 25.0])
def test_table_figure_draws_no_bar_for_a_missing_cell(tail: float):
    fig = table_figure([_cell("kd", 100, tail, 30.0), _cell("ltkd", 10, tail, 31.0)], "t")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sorted(h for h in heights if h == h) == [tail, tail]  # two real bars, the missing ones NaN
    plt.close(fig)


def test_table_figure_legend_covers_no_bar_and_a_method_keeps_its_colour_in_every_panel():
    methods = ["teacher", "kd", "ltkd (rebalance=batch, reweight=False)", "ltkd (rebalance=none, reweight=True)"]
    cells = [_cell(m, 100, 3.0 + i, 20.0 + i) for i, m in enumerate(methods)]
    other = Cell("cifar100_lt", 100, "resnet32", "resnet8", "kd")  # a second pair, kd only
    other.values["tail"].append(1.0)
    other.values["overall"].append(10.0)
    fig = table_figure([*cells, other], "t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == methods
    box = legend.get_window_extent(renderer)
    bars = [p for ax in fig.axes for p in ax.patches if p.get_height() == p.get_height()]
    assert bars and not any(box.overlaps(p.get_window_extent(renderer)) for p in bars)
    kd = [bar for ax in fig.axes for bars in ax.containers if bars.get_label() == "kd" for bar in bars]
    assert len(kd) == 4 and len({bar.get_facecolor() for bar in kd}) == 1  # 2 pairs x tail, overall
    plt.close(fig)


def test_per_class_plot_orders_classes_by_group_not_by_index():
    """Class c has count c + 1 (tail first by index): the curves run head to tail, counts and accuracies alike."""
    counts = [c + 1 for c in range(10)]
    groups = {"head": [9, 8, 7], "medium": [6, 5, 4, 3], "tail": [2, 1, 0]}
    fig = per_class_figure(counts, groups, {"student": [float(c) for c in range(10)]}, "t")
    ax, right = fig.axes
    (curve,) = [line for line in right.get_lines() if line.get_label() == "training images"]
    (student,) = [line for line in ax.get_lines() if line.get_label() == "student"]
    assert list(curve.get_ydata()) == list(range(10, 0, -1))
    assert list(student.get_ydata()) == [float(c) for c in range(9, -1, -1)]
