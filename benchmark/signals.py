"""Shared training signals: one proxy run on the full pool, recorded once, read by many methods.

After every epoch of a standard-training proxy run the harness makes ONE eval-mode pass without
augmentation over the pool and one over the validation split, and records from it, per sample:
loss, true-class probability, largest other-class probability, correctness, (when asked) the L2
norm of the loss gradient with respect to the [0, 1] input (one backward pass to the input, the
weights frozen) and, at the checkpoint epochs, logits and penultimate embeddings
(``training.eval_signals``). During training it records each sample's mini-batch correctness
(forgetting events). The optional groups thus cost one backward pass to the input per epoch and
nothing for the embeddings. See ``kinds.SIGNALS``.

Signals are cached under ``<cache>/signals/<key>/`` where the key hashes everything the proxy
depends on (dataset, split, architecture, recipe, seed). A method declares what it needs;
only those groups are computed, and a later request for more recomputes the union. The proxy's
wall time is stored with the cache so that every cell that uses it records the cost, flagged as
shared, even when the cache served it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import locks
from .kinds import SIGNALS, TrainingMethod
from .cells import canonical_json

#: signal name -> group that computes it
GROUPS: dict[str, str] = {
    "loss": "dynamics",
    "prob_true": "dynamics",
    "prob_other_max": "dynamics",
    "correct": "dynamics",
    "train_correct": "dynamics",
    "val_loss": "dynamics",
    "input_grad_norm": "input_grad",
    "logits": "checkpoints",
    "embeddings": "checkpoints",
    "val_logits": "checkpoints",
    "val_embeddings": "checkpoints",
    "checkpoint_epochs": "checkpoints",
    "proxy_model": "dynamics",
}
assert set(GROUPS) == set(SIGNALS)


def groups_for(names: Iterable[str]) -> set[str]:
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown signals {unknown}; known: {', '.join(GROUPS)}")
    return {GROUPS[n] for n in names}


@dataclass
class ProxySpec:
    """Everything a proxy run depends on (its hash is the cache key)."""

    dataset: str
    split: Mapping[str, Any]
    arch: str
    recipe: Mapping[str, Any]
    seed: int
    checkpoint_epochs: tuple[int, ...]

    @property
    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.__dict__).encode()).hexdigest()[:24]


@dataclass
class SignalBundle:
    arrays: dict[str, Any]
    proxy_s: float
    shared: bool  # served from the cache (computed by an earlier cell or run)
    groups: set[str]


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    meta_f = path / "meta.json"
    if not meta_f.exists():
        return None
    meta = json.loads(meta_f.read_text())
    with np.load(path / "signals.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, meta


def compute_signals(
    spec: ProxySpec,
    wanted: Iterable[str],
    *,
    x_pool: torch.Tensor,
    y_pool: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    num_classes: int,
    model_factory: Callable[[], torch.nn.Module],
    training: TrainingMethod,
    pad: int,
    hflip: bool,
    cache_dir: Path | None,
    progress: Callable[[str, float], None] | None = None,
) -> SignalBundle:
    """Return the wanted signals, from the cache when it holds them, else from a proxy run.

    With a cache, concurrent cells that need the same proxy run do not both train it: the
    load-or-compute step holds the key's lock, so the others wait and then read the cache."""
    groups = groups_for(wanted)
    if not groups:
        return SignalBundle({}, 0.0, False, set())
    from . import training as tr

    path = Path(cache_dir) / "signals" / spec.key if cache_dir else None
    with locks.lock_for(path) if path is not None else contextlib.nullcontext():
        if path is not None:
            got = _load(path)
            if got is not None:
                arrays, meta = got
                if groups <= set(meta["groups"]):
                    return SignalBundle(_with_model(arrays, path, model_factory, x_pool.device), float(meta["proxy_s"]), True, set(meta["groups"]))
                groups |= set(meta["groups"])  # recompute the union so the cache only grows

        t0 = time.perf_counter()
        want_grad = "input_grad" in groups
        want_ckpt = "checkpoints" in groups
        n = len(y_pool)
        ckpts = set(spec.checkpoint_epochs)
        per_epoch: dict[str, list[np.ndarray]] = {k: [] for k in ("loss", "prob_true", "prob_other_max", "correct", "val_loss", "train_correct")}
        if want_grad:
            per_epoch["input_grad_norm"] = []
        ck: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "embeddings", "val_logits", "val_embeddings")}
        ck_epochs: list[int] = []
        batch_correct = np.zeros(n, dtype=bool)

        def on_batch(idx: torch.Tensor, logits: torch.Tensor) -> None:
            i = idx.cpu().numpy()
            batch_correct[i] = (logits.argmax(1) == y_pool[idx]).cpu().numpy()

        def on_epoch_end(epoch: int, model: torch.nn.Module) -> None:
            # one eval pass per split yields the dynamics, the input gradients (one backward to the
            # input, weights frozen) and, at a checkpoint, embeddings and logits: no extra passes
            at_ckpt = want_ckpt and epoch in ckpts
            s = tr.eval_signals(model, x_pool, y_pool, input_grad=want_grad, features=at_ckpt)
            for k in ("loss", "prob_true", "prob_other_max", "correct"):
                per_epoch[k].append(s[k])
            if want_grad:
                per_epoch["input_grad_norm"].append(s["input_grad_norm"])
            per_epoch["train_correct"].append(batch_correct.copy())
            v = tr.eval_signals(model, x_val, y_val, input_grad=False, features=at_ckpt) if len(y_val) else None
            per_epoch["val_loss"].append(v["loss"] if v is not None else np.zeros(0, dtype=np.float32))
            if at_ckpt:
                ck["embeddings"].append(s["embeddings"])
                ck["logits"].append(s["logits"])
                if v is not None:
                    ve, vl = v["embeddings"], v["logits"]
                else:
                    ve, vl = np.zeros((0, s["embeddings"].shape[1]), np.float32), np.zeros((0, s["logits"].shape[1]), np.float32)
                ck["val_embeddings"].append(ve)
                ck["val_logits"].append(vl)
                ck_epochs.append(epoch)

        model = model_factory()
        recipe = {**dict(spec.recipe), "budget_mode": "epochs"}
        tr.train(
            model,
            x_pool,
            y_pool,
            method=training,
            recipe=recipe,
            num_classes=num_classes,
            seed=spec.seed,
            pad=pad,
            hflip=hflip,
            on_epoch_end=on_epoch_end,
            on_batch=on_batch,
            progress=progress,
        )
        arrays: dict[str, np.ndarray] = {k: np.stack(v) for k, v in per_epoch.items() if v}
        if want_ckpt and ck_epochs:
            for k, v in ck.items():
                arrays[k] = np.stack(v)
            arrays["checkpoint_epochs"] = np.asarray(ck_epochs, dtype=np.int64)
        proxy_s = time.perf_counter() - t0
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if path is not None:
            _save(path, arrays, state, {"groups": sorted(groups), "proxy_s": proxy_s, "spec": spec.__dict__})
            return SignalBundle(_with_model(arrays, path, model_factory, x_pool.device), proxy_s, False, groups)
        arrays_any: dict[str, Any] = dict(arrays)
        arrays_any["proxy_model"] = ProxyModel(model_factory, x_pool.device, state=state)
        return SignalBundle(arrays_any, proxy_s, False, groups)


def _save(path: Path, arrays: Mapping[str, np.ndarray], state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Write atomically: a temporary directory renamed into place (under the key's lock)."""
    tmp = locks.temp_dir_for(path)
    np.savez(tmp / "signals.npz", **arrays)
    torch.save(dict(state), tmp / "proxy.pt")
    (tmp / "meta.json").write_text(json.dumps(meta, default=str, sort_keys=True))
    locks.replace_dir(tmp, path)


class ProxyModel:
    """The ``proxy_model`` signal: ``()`` -> the final proxy model, eval mode, on ``device``.

    Picklable when its factory is (it travels to the contestant worker): it holds either the
    weights (``state``) or the cache directory of the signals (``path``), read under the key's
    lock since a run that widens the cached signals replaces the directory."""

    def __init__(self, factory: Callable[[], torch.nn.Module], device: Any, *, state: Mapping[str, torch.Tensor] | None = None, path: Path | None = None) -> None:
        self.factory, self.device, self.state, self.path = factory, str(device), state, path

    def __call__(self) -> torch.nn.Module:
        m = self.factory()
        if self.state is not None:
            m.load_state_dict(self.state)
        else:
            assert self.path is not None
            with locks.lock_for(self.path):
                m.load_state_dict(torch.load(self.path / "proxy.pt", weights_only=True))
        return m.to(self.device).eval()


def _with_model(arrays: Mapping[str, Any], path: Path, factory: Callable[[], torch.nn.Module], device: Any) -> dict[str, Any]:
    out = dict(arrays)
    out["proxy_model"] = ProxyModel(factory, device, path=path)
    return out


def restrict(arrays: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Only the declared signals (a method never sees what it did not ask for)."""
    names = set(names)
    return {k: v for k, v in arrays.items() if k in names}


def cache_size(cache_dir: Path) -> int:
    total = 0
    for root, _d, files in os.walk(cache_dir):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total
