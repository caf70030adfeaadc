"""GLISTER: greedily pick the samples whose gradient step most increases validation
log-likelihood (one-step Taylor approximation on the last layer).

Formula (per class c; ``g_i`` the last-layer gradient ``[p - y, (p - y) (x) e]`` of training
sample i at the final proxy checkpoint; ``gbar_val(theta)`` the mean last-layer gradient of the
class's validation samples under last-layer parameters ``theta``)::

    gain(i | S) = < g_i , gbar_val(theta_S) >
    theta_S     = theta - eta * mean_{j in S} g_j        (one SGD step of the head on the picks)

i.e. validation logits ``z_v(theta_S) = z_v - eta (db + dW e_v)`` with ``[db, dW]`` the mean
picked gradient. Each step picks the largest gain, then recomputes ``gbar_val`` at
``theta_S``. What is kept: the ``budget_c`` greedy picks of each class, in pick order.

Citation: Krishnateja Killamsetty, Durga Sivasubramanian, Ganesh Ramakrishnan and Rishabh Iyer,
"GLISTER: Generalization based Data Subset Selection for Efficient and Robust Learning", AAAI
2021; DeepCore ``deepcore/methods/glister.py``.

**DeepCore's Glister never updates: it is a static top-k.** ``finish_run`` passes its update
callback to the greedy as ``upadate_state=self.update_val_gradients`` (sic), and every optimizer
of ``submodular_optimizer.py`` is ``select(gain_function, update_state=None, **kwargs)``: the
misspelled keyword lands in ``**kwargs`` (and is forwarded, unused, to the gain lambda), so
``update_state`` stays None and ``update_val_gradients`` is never called. The gain
``<g_i, gbar_val(theta)>`` therefore stays at the proxy's final head, and DeepCore's LazyGreedy
(re-evaluating the same static gains) keeps the ``budget_c`` samples of largest static gain: a
plain top-k of our greedy's first-step gains (up to the gradient scaling below). We implement
the paper's update (the one ``update_val_gradients`` was written to do); there is no parameter
for DeepCore's static top-k.

Choices where the spec leaves a detail open:

- **Validation set.** The paper selects against a held-out validation set; DeepCore defaults
  to the training set itself. ``validation="val"`` (default) uses the view's validation split
  (the class's validation samples when ``class_balanced=True``); ``"train"`` uses DeepCore's
  default target set (not its picks, see above). A class without validation samples falls back
  to its training samples.
- **Greedy.** The gain is not submodular, so stale gains are not upper bounds. The default
  ``greedy="naive"`` evaluates every candidate's gain at each step (one matrix-vector product);
  ``greedy="lazy"`` runs the LazyGreedy heuristic of DeepCore's default optimizer (batched) on
  the updated gains.
- **Step size** ``eta`` defaults to 0.1, DeepCore's ``args.lr`` default. As DeepCore's (never
  called) ``update_val_gradients``, every update starts from the proxy's final logits with the
  *mean* gradient of all picks so far.
- **Gradient scale.** ``g_i`` is the per-sample cross-entropy gradient ``p - y`` of the logits.
  DeepCore applies ``nn.CrossEntropyLoss`` to the logits too (one softmax; there is no double
  softmax, as an earlier version of this docstring said), but its criterion averages over each
  selection batch (default reduction ``"mean"``, then ``.sum()`` of the scalar), so its
  per-sample gradients are divided by the length of their batch of ``selection_batch`` samples
  (``--batch``, 256 by default). Within a class, the samples of the last, shorter batch get
  their gains multiplied by ``256 / its length`` relative to the others, which changes the
  ranking; we use the unscaled gradient.
"""

from __future__ import annotations

import numpy as np
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

from ._greedy import check_choice, final_arrays, final_grads, greedy_maximize, mean_last_layer_grad, select_groups


class GlisterGain:
    """State of GLISTER's greedy for one group (``greedy_maximize`` protocol)."""

    def __init__(self, g: torch.Tensor, emb_val: torch.Tensor, logits_val: torch.Tensor, y_val: torch.Tensor, eta: float) -> None:
        self.g = g
        self.n = int(g.shape[0])
        self.emb_val = emb_val
        self.logits_val = logits_val
        self.y_val = y_val
        self.eta = float(eta)
        self.c = int(logits_val.shape[1])
        self.sum = torch.zeros(g.shape[1], dtype=g.dtype, device=g.device)
        self.k = 0
        self.val_grad = mean_last_layer_grad(emb_val, logits_val, y_val)

    def gains(self, idx: torch.Tensor) -> torch.Tensor:
        return self.g[idx] @ self.val_grad

    def gains_all(self) -> torch.Tensor:
        return self.g @ self.val_grad

    def update(self, j: int) -> None:
        self.sum += self.g[j]
        self.k += 1
        mean = self.sum / self.k
        db, dw = mean[: self.c], mean[self.c :].view(self.c, -1)
        logits = self.logits_val - self.eta * (db[None, :] + self.emb_val @ dw.T)
        self.val_grad = mean_last_layer_grad(self.emb_val, logits, self.y_val)


class Glister(SelectionMethod):
    name = "glister"
    version = "0.1"
    summary = "GLISTER: greedy one-step Taylor gain in validation log-likelihood on the last layer, per class."
    citation = "Killamsetty, Sivasubramanian, Ramakrishnan & Iyer, GLISTER: Generalization based Data Subset Selection for Efficient and Robust Learning, AAAI 2021"
    params = {"class_balanced": True, "eta": 0.1, "greedy": "naive", "validation": "val"}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "eta": Param(float, min=0, min_open=True, help="SGD step of the head on the picks"), "greedy": Param(str, choices=("naive", "lazy")), "validation": Param(str, choices=("val", "train"))}
    signals = frozenset({"embeddings", "logits", "val_embeddings", "val_logits"})

    def select(self, view: SelectionView) -> Selection:
        greedy = check_choice(self.name, "greedy", self.params["greedy"], ("naive", "lazy"))
        source = check_choice(self.name, "validation", self.params["validation"], ("val", "train"))
        balanced = bool(self.params["class_balanced"])
        eta = float(self.params["eta"])
        val_labels = view.val_labels
        labels = view.labels
        used: list[str] = []

        def one(members: np.ndarray, budget: int) -> tuple[np.ndarray, None]:
            target = final_arrays(view, members)
            split = "train"
            if source == "val":
                vrows = np.flatnonzero(val_labels == labels[members[0]]) if balanced else np.arange(len(val_labels))
                if len(vrows):
                    target = final_arrays(view, vrows, validation=True)
                    split = "val"
            used.append(split)
            fn = GlisterGain(final_grads(view, members), *target, eta)
            order = greedy_maximize(fn, budget, lazy=greedy == "lazy")
            return np.asarray(order, dtype=np.int64), None

        indices, _ = select_groups(view, balanced, one)
        return Selection(indices=indices, info={"validation_per_group": used})


@hookimpl
def register_methods(register):
    register(Glister())
