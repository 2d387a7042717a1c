"""Diagnostics where they are read (issue 16): the engine reads a training step's ``Output.stats`` on every
``STATS_EVERY``-th batch only and tells the model so (``Trainable.diagnose``); the other steps must train exactly
the same loss and may skip the diagnostics."""

from __future__ import annotations

import copy

import pytest
import torch

from aekit.registry import build_model, get, list_models
from aekit.train.module import STATS, STATS_EVERY, LitAutoencoder
from aekit.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = list(list_models())


def tiny(name: str):
    torch.manual_seed(0)
    return build_model(name, input_shape=(1, 8, 8), latent_dim=3, **get(name).cls.tiny_options)


def _forward(model, x, y, diagnose: bool, seed: int = 1):
    model = copy.deepcopy(model)  # a training forward may move state (vq-vae's EMA codebook): same start both times
    model.diagnose = diagnose
    torch.manual_seed(seed)  # the same reparameterisation and input noise both times
    try:
        return model.forward_batch(x, y)
    finally:
        model.diagnose = True


@pytest.mark.parametrize("name", MODELS)
def test_skipping_diagnostics_never_changes_the_loss(name):
    """Every family, in a training step: the loss and each term are the same whether the step's diagnostics are
    read or not, and with them read the Output is whole (x_hat, stats)."""
    model = tiny(name).train()
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6) % 2
    full, lean = _forward(model, x, y, True), _forward(model, x, y, False)
    torch.testing.assert_close(lean.loss, full.loss)
    assert list(lean.terms) == list(full.terms)
    for k in full.terms:
        torch.testing.assert_close(lean.terms[k], full.terms[k])
    assert full.x_hat is not None and full.x_hat.shape == x.shape and full.stats


@pytest.mark.parametrize("name", ["ae", "vae", "iwae", "hvae", "cvae"])
def test_families_skip_their_diagnostics_when_unread(name):
    model = tiny(name).train()
    x = torch.rand(4, 1, 8, 8)
    lean = _forward(model, x, torch.zeros(4, dtype=torch.long), False)
    assert lean.stats == {} and lean.x_hat is None
    model.eval()  # evaluation and validation always compute them, whatever the flag says
    model.diagnose = False
    assert model.wants_stats()
    out = model.forward_batch(x, torch.zeros(4, dtype=torch.long))
    assert out.stats and out.x_hat is not None


def test_the_engine_reads_stats_on_every_nth_batch(tmp_path):
    """A real fit: the model is asked for its diagnostics on batches 0, N, 2N ... of each epoch only, the
    metrics still have their train_<stat> columns, and after the fit the model computes everything again."""
    import aekit
    from aekit.data import load_data

    data = load_data("digits", val_fraction=0.2)
    model = build_model("vae", input_shape=tuple(data.shape), latent_dim=2, hidden_dims=(16,))
    asked: list[bool] = []
    hook = model.register_forward_pre_hook(lambda m, args: asked.append(m.wants_stats()) if m.training else None)
    cfg = TrainConfig(epochs=2, batch_size=32, progress=False, log_epochs=False, patience=0)
    run = aekit.fit(model, data, cfg, out=tmp_path / "run")
    hook.remove()
    n_batches = -(-len(data.splits["train"]) // 32)
    per_epoch = [i % STATS_EVERY == 0 for i in range(n_batches)]
    assert asked == per_epoch * 2
    assert sum(per_epoch) < n_batches  # the test means something: some batches skipped them
    rows = run.metrics()
    assert all(r["train_mse"] > 0 and r["train_elbo"] < 0 and r["val_mse"] > 0 for r in rows)
    assert model.diagnose is True


def test_an_old_checkpoint_row_splits_into_terms_and_stats():
    """A mid-epoch checkpoint written before STATS_EVERY held one row of sums (terms and stats, one count):
    it is split so the resumed epoch's means are the same."""
    lit = LitAutoencoder(tiny("vae"), TrainConfig())
    lit._keys = {"train": ["loss", "loss_recon", "loss_kl", "mse", "kl_nats", "elbo"]}
    lit._sums = {"train": torch.tensor([60.0, 50.0, 10.0, 0.3, 10.0, -60.0])}
    lit._counts = {"train": 3}
    lit._split_stats("train")
    assert lit._keys == {"train": ["loss", "loss_recon", "loss_kl"], "train" + STATS: ["mse", "kl_nats", "elbo"]}
    assert lit._sums["train"].tolist() == [60.0, 50.0, 10.0]
    assert lit._sums["train" + STATS].tolist() == pytest.approx([0.3, 10.0, -60.0])
    assert lit._counts == {"train": 3, "train" + STATS: 3}
    # a split whose names came back without sums (validation's, reset at the epoch's start) takes new sums
    lit._keys["val" + STATS] = ["mse"]
    lit._add_stats("val" + STATS, {"mse": torch.tensor(0.5)}, 4)
    assert lit._sums["val" + STATS].tolist() == [2.0, 4.0]


def test_batch_groups_hand_out_the_same_batches_and_resume_between_groups(tmp_path):
    """loader.Grouped: Lightning's step is a group of GROUP batches; the batches, their order and the resumable
    state are the inner loader's, counted in batches."""
    from aekit.data import load_data
    from aekit.train.loader import GROUP, BatchLoader, Grouped, group_for

    data = load_data("digits", val_fraction=0.2)

    def inner():
        return BatchLoader(data, "train", 32, shuffle=True, seed=3, context=lambda: (2, 0, 1))

    plain = list(inner())
    grouped = Grouped(inner(), GROUP)
    groups = list(grouped)
    assert len(groups) == len(grouped) == -(-len(plain) // GROUP) and grouped.batches == len(plain)
    assert [len(g) for g in groups[:-1]] == [GROUP] * (len(groups) - 1)
    flat = [b for g in groups for b in g]
    assert len(flat) == len(plain) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(flat, plain))

    first = Grouped(inner(), GROUP)
    it = iter(first)
    next(it)  # one group trained, then a checkpoint
    state = first.state_dict()
    assert state == {"epoch": 2, "batch": GROUP, "group": GROUP} and first.position() == GROUP
    again = Grouped(inner(), GROUP)
    again.load_state_dict(state)
    rest = [b for g in again for b in g]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, plain[GROUP:])) and len(rest) == len(plain) - GROUP

    # the group of a session: GROUP, 1 with --checkpoint-every, and a resumed one's saved group (1 before groups)
    assert group_for(0, None) == GROUP and group_for(5, None) == 1
    for saved, expected in (({"epoch": 0, "batch": 3, "group": 4}, 4), ({"epoch": 0, "batch": 3}, 1)):
        torch.save({"loops": {"fit_loop": {"state_dict": {"combined_loader": [saved]}}}}, tmp_path / "last.ckpt")
        assert group_for(0, tmp_path / "last.ckpt") == expected


def test_each_diagnostic_is_averaged_over_the_steps_that_report_it():
    """A family may report some stats every step and others only when asked (vae-gan: its update shares every
    step, the MSE on every 8th): each stat keeps its own count, names seen late widen the sums."""
    from aekit.models.base import Output

    lit = LitAutoencoder(tiny("vae"), TrainConfig())
    t = torch.tensor

    def step(n, **stats):
        lit._accumulate("train", Output(loss=t(1.0), terms={"recon": t(1.0)}, x_hat=None, z=t(0.0),
                                        stats={k: t(float(v)) for k, v in stats.items()}), n)

    step(2, a=1, b=10)
    step(4, b=20)  # a not reported
    step(2, c=5, a=3)  # a new name, another order
    names = lit._keys["train" + STATS]
    assert names == ["a", "b", "c"]
    sums = lit._sums["train" + STATS]
    k = len(names)
    means = dict(zip(names, (sums[:k] / sums[k:]).tolist()))
    assert means == pytest.approx({"a": (2 * 1 + 2 * 3) / 4, "b": (2 * 10 + 4 * 20) / 6, "c": 5.0})
    assert lit._sums["train"].tolist() == [8.0, 8.0] and lit._counts["train"] == 8  # the loss: every step
