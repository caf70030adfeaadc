"""Tests of the lowloss plugin, written with coreset-bench's testing kit.

``check_selection_method`` runs the harness's own conformance checks; the fixture
``coreset_bench_selection_view`` (a small synthetic view with every signal) comes from the
pytest plugin that coreset-bench registers (entry point ``pytest11``), so no import is needed.
"""

import numpy as np
import pytest

from coreset_bench.kinds import SelectionView, Signals
from coreset_bench.testing import check_selection_method, make_selection_view, validate_selection

from coreset_bench_example import LowLoss


def only_declared(view: SelectionView, method) -> SelectionView:
    """The view as the harness hands it over: only the signals the method declared."""
    sig = Signals({k: v for k, v in view.signals.items() if k in method.signals}, method=method.name)
    return SelectionView(**{**view.__dict__, "signals": sig})


def test_conforms_to_the_harness_checks():
    sel = check_selection_method(LowLoss())
    assert len(sel.indices) == make_selection_view().budget


@pytest.mark.parametrize("class_balanced", [True, False])
def test_conforms_with_either_setting(class_balanced):
    check_selection_method(LowLoss().with_params(class_balanced=class_balanced))


def test_keeps_the_lowest_final_loss_per_class(coreset_bench_selection_view):
    m = LowLoss()
    view = only_declared(coreset_bench_selection_view, m)
    sel = validate_selection(m.select(view), view, m)
    final = np.asarray(view.signals["loss"])[-1]
    labels = view.labels
    for c, k in enumerate(view.class_budgets()):
        members = np.flatnonzero(labels == c)
        chosen = np.intersect1d(sel.indices, members)
        assert len(chosen) == k
        # every chosen sample of the class has a lower loss than every rejected one
        rejected = np.setdiff1d(members, chosen)
        if len(chosen) and len(rejected):
            assert final[chosen].max() <= final[rejected].min()


def test_unbalanced_ranks_the_whole_pool(coreset_bench_selection_view):
    m = LowLoss().with_params(class_balanced="false")  # the CLI passes strings; they are coerced
    assert m.params["class_balanced"] is False
    view = only_declared(coreset_bench_selection_view, m)
    sel = validate_selection(m.select(view), view, m)
    final = np.asarray(view.signals["loss"])[-1]
    assert set(sel.indices) == set(np.argsort(final, kind="stable")[: view.budget])


def test_uses_the_requested_epoch():
    n, classes = 40, 2
    labels = np.arange(n) % classes
    loss = np.stack([np.arange(n, dtype=np.float32), np.arange(n, dtype=np.float32)[::-1].copy()])
    view = make_selection_view(n=n, num_classes=classes, labels=labels, budget=10, signals={"loss": loss})
    last = LowLoss().with_params(class_balanced=False)
    first = LowLoss().with_params(class_balanced=False, epoch="0")
    assert sorted(last.select(only_declared(view, last)).indices) == list(range(30, 40))
    assert sorted(first.select(only_declared(view, first)).indices) == list(range(10))


def test_reads_only_the_loss_signal(coreset_bench_selection_view):
    m = LowLoss()
    view = only_declared(coreset_bench_selection_view, m)
    assert set(view.signals) == {"loss"}
    m.select(view)  # a KeyError here would mean the method reads a signal it did not declare
