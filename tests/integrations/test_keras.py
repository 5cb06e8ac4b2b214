"""lrtune.integrations.keras on the backend of this process (torch, set by the root conftest),
and on JAX in a subprocess (Keras fixes its backend at first import)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
lk = pytest.importorskip("lrtune.integrations.keras")

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _global_rngs():
    """keras.utils.set_random_seed seeds Python's, numpy's and the backend's global RNGs: give
    them back afterwards, so that other tests do not depend on which ran before."""
    import random

    states = random.getstate(), np.random.get_state()  # noqa: NPY002 (the global one)
    torch = sys.modules.get("torch")
    torch_state = torch.get_rng_state() if torch is not None else None
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])  # noqa: NPY002
    if torch_state is not None:
        torch.set_rng_state(torch_state)


@pytest.fixture
def blobs():
    """3 separable classes, 8 features, 100 samples (batches of 32: a partial last one)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    y = np.arange(100) % 3
    return (centers[y] + rng.normal(size=(100, 8))).astype("float32"), y.astype("int32")


def mlp(*layers, optimizer=None, seed=0, dtype="float32", **compile_args):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,), dtype=dtype),
                              keras.layers.Dense(16, activation="relu", dtype=dtype), *layers,
                              keras.layers.Dense(3, dtype=dtype)])
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  **compile_args)
    return model


def values(variables):
    return [lk._numpy(v) for v in variables]


class Probe(keras.callbacks.Callback):
    """Records, before each step, the loss of the batch about to be trained (computed by hand)
    and the optimizer's hyperparameters; after each epoch, the weights."""

    def __init__(self, x=None, y=None, batch_size=32):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.losses, self.lrs, self.momenta, self.epoch_weights = [], [], [], []

    def on_train_batch_begin(self, batch, logs=None):
        if hasattr(self.model, "jax_state_sync"):
            self.model.jax_state_sync()
        opt = self.model.optimizer
        lr = opt.learning_rate  # a variable, or the schedule's value
        self.lrs.append(float(lk._numpy(lr)))
        self.momenta.append(float(getattr(opt, "momentum", getattr(opt, "beta_1", 0.0))))
        if self.x is not None:
            sl = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
            logits = self.model(self.x[sl], training=True)
            loss = self.model.loss(self.y[sl], logits)
            self.losses.append(float(lk._numpy(loss)))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_weights.append(values(self.model.trainable_variables))


# -- import ----------------------------------------------------------------------------------

def test_import_without_keras_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # `import keras` now fails as if absent
    monkeypatch.delitem(sys.modules, "lrtune.integrations.keras")
    with pytest.raises(ImportError) as info:
        importlib.import_module("lrtune.integrations.keras")
    message = str(info.value)
    assert "pip install 'lrtune[keras]'" in message and "\n" not in message


# -- the range test --------------------------------------------------------------------------

def test_per_batch_loss_is_the_running_mean_de_averaged(blobs):
    """Partial last batches and epoch resets of Keras' running mean included."""
    x, y = blobs
    model = mlp()
    test = lk.LRRangeTest(1e-3, 1.0, num_iters=10, smooth=0.0)
    probe = Probe(x, y)
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=[test, probe])
    assert len(test.result.train_losses) == 10  # 4 batches (32, 32, 32, 4) per epoch
    np.testing.assert_allclose(test.result.train_losses, probe.losses[:10], rtol=2e-5)
    np.testing.assert_allclose(probe.lrs[:10], test.result.train_lrs, rtol=1e-6)


def test_running_mean_itself_differs_from_batch_losses(blobs):
    """Guard for the test above: de-averaging is needed (logs["loss"] is not per batch)."""
    x, y = blobs
    model = mlp()
    seen = []
    log = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(
        float(logs["loss"])))
    probe = Probe(x, y)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[probe, log])
    assert seen[0] == pytest.approx(probe.losses[0], rel=1e-5)
    assert np.mean(probe.losses[:2]) == pytest.approx(seen[1], rel=1e-5)
    assert abs(seen[1] - probe.losses[1]) > 1e-4


def test_find_lr_restores_every_variable(blobs):
    x, y = blobs
    model = mlp(keras.layers.BatchNormalization(), keras.layers.Dropout(0.2),
                optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # optimizer state to restore
    before = values([*model.variables, *model.optimizer.variables])
    result = lk.find_lr(model, x, y, num_iters=20, start_lr=1e-4, end_lr=1.0)
    after = values([*model.variables, *model.optimizer.variables])
    assert len(result.train_lrs) > 1
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    lk.find_lr(model, x, y, num_iters=20, start_lr=1e-4, end_lr=1.0, restore=False)
    changed = values(model.trainable_variables)
    assert any(not np.array_equal(a, b) for a, b in zip(before, changed, strict=False))


def test_find_lr_result_is_the_cores(blobs, tmp_path):
    x, y = blobs
    model = mlp(optimizer=keras.optimizers.Adam(0.01))
    result = lk.find_lr(model, x, y, num_iters=60, start_lr=1e-4, end_lr=100.0)
    assert isinstance(result, lk.FinderResult)
    assert result.stop_reason == "diverged" and len(result.lrs) < 60
    assert result.verdict == "ok" and 1e-4 < result.suggested_lr < 100.0
    assert result.settings["framework"].endswith(f"({BACKEND})")
    png, js = result.save(tmp_path)
    assert png.exists() and lk.FinderResult.from_json(js).lrs == result.lrs


def test_own_fit_stops_at_num_iters(blobs):
    x, y = blobs
    model = mlp()
    test, probe = lk.LRRangeTest(1e-4, 0.1, num_iters=7), Probe()
    model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[test, probe])
    assert len(probe.lrs) == 7 and test.result.stop_reason == "finished"
    assert test.result.stop_lr == pytest.approx(0.1)


class FixedRate(keras.callbacks.Callback):
    """A user's per-batch schedule: sets the learning rate before every batch."""

    def on_train_batch_begin(self, batch, logs=None):
        lk._sync(self.model)
        self.model.optimizer.learning_rate.assign(0.01)


def test_a_rate_set_by_a_later_callback_is_refused_after_restoring(blobs):
    x, y = blobs
    model = mlp()
    lk._snapshot(model)  # builds the optimizer, so that its variables can be compared
    before = values([*model.variables, *model.optimizer.variables])
    test = lk.LRRangeTest(1e-4, 1.0, num_iters=7)
    with pytest.raises(ValueError, match=r"^another callback set the optimizer's learning_rate "
                                         r"during the range test \(0\.01 instead of the sweep's "
                                         r"0\.0001 at step 0\)"):
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[test, FixedRate()])
    for a, b in zip(before, values([*model.variables, *model.optimizer.variables]), strict=True):
        np.testing.assert_array_equal(a, b)
    # before the test in the list, the test's rate wins: the sweep is the one recorded
    probe = Probe()
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[FixedRate(), test, probe])
    np.testing.assert_allclose(probe.lrs, test.result.train_lrs, rtol=1e-6)


class Iterations(keras.callbacks.Callback):
    """Counts the batches fit runs and records the optimizer's step count after each."""

    def __init__(self):
        super().__init__()
        self.iterations = []

    def on_train_batch_end(self, batch, logs=None):
        lk._sync(self.model)
        self.iterations.append(int(lk._numpy(self.model.optimizer.iterations)))


def scaled_sgd():
    """SGD under a loss-scale optimizer whose first scale overflows float32 gradients: it skips
    steps (halving the scale) until the scaled gradients are finite, as mixed_float16's does."""
    return keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01), initial_scale=1e38)


@pytest.fixture
def large(blobs):
    """The blobs times 10: the first 4 scales overflow their gradients (both backends)."""
    return blobs[0] * 10, blobs[1]


def test_steps_the_loss_scaler_skips_are_no_points(large):
    """Skipped steps record nothing and the sweep's rate waits for them, so the curve still
    has num_iters points at the sweep's rates."""
    x, y = large
    model = mlp(optimizer=scaled_sgd())
    lk._snapshot(model)
    before = values([*model.variables, *model.optimizer.variables])
    probe = Iterations()
    model.fit(x, y, batch_size=10, epochs=3, verbose=0,
              callbacks=[probe, test := lk.LRRangeTest(1e-7, 1e-5, num_iters=8)])
    assert len(probe.iterations) > 8 and probe.iterations[0] == 0  # the first step skipped
    assert probe.iterations[-1] == 8  # eight steps taken, eight points
    from lrtune.finder.range_test import lr_at

    np.testing.assert_allclose(test.result.train_lrs, [lr_at(i, start_lr=1e-7, end_lr=1e-5,
                                                             num_iters=8, mode="exp")
                                                       for i in range(8)])
    for a, b in zip(before, values([*model.variables, *model.optimizer.variables]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_find_lr_takes_num_iters_points_despite_skipped_steps(large):
    x, y = large
    result = lk.find_lr(mlp(optimizer=scaled_sgd()), x, y, batch_size=10, start_lr=1e-7,
                        end_lr=1e-5, num_iters=8)
    assert len(result.train_lrs) == 8 and result.stop_lr == pytest.approx(1e-5)


class RawLoss(keras.Sequential):
    """Keras' train step, but logging another value as ``loss`` (here the batch's loss in
    inference mode)."""

    def train_step(self, data):
        x, y = data
        logs = super().train_step(data)
        loss = self.compute_loss(x, y, self(x, training=False))
        return {**logs, "loss": keras.ops.stop_gradient(loss)}


class Untracked(keras.Sequential):
    """A hand-written train step (torch backend) that does not update the loss tracker."""

    def train_step(self, data):
        x, y = data
        self.zero_grad()
        loss = self.compute_loss(x, y, self(x, training=True))
        loss.backward()
        self.optimizer.apply([v.value.grad for v in self.trainable_weights],
                             self.trainable_weights)
        return {"loss": keras.ops.stop_gradient(loss)}


def custom(cls):
    keras.utils.set_random_seed(0)
    model = cls([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                 keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.skipif(BACKEND != "torch", reason="train_step's signature is the backend's")
def test_the_loss_is_the_trackers_whatever_train_step_logs(blobs):
    x, y = blobs
    sweep = dict(start_lr=1e-3, end_lr=1.0, num_iters=8)
    reference = lk.find_lr(custom(keras.Sequential), x, y, **sweep)
    np.testing.assert_allclose(lk.find_lr(custom(RawLoss), x, y, **sweep).train_losses,
                               reference.train_losses, rtol=1e-5)
    model = custom(Untracked)
    before = values(model.variables)
    with pytest.raises(ValueError, match=r"^the train step did not update the model's 'loss' "
                                         r"metric"):
        lk.find_lr(model, x, y, **sweep)
    for a, b in zip(before, values(model.variables), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dataset_input_gives_the_curve_of_the_same_arrays(blobs):
    x, y = blobs

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]

    from_arrays = lk.find_lr(mlp(), x[:96], y[:96], shuffle=False, num_iters=12,
                             start_lr=1e-3, end_lr=1.0)
    from_dataset = lk.find_lr(mlp(), Batches(), num_iters=12, start_lr=1e-3, end_lr=1.0)
    assert len(from_dataset.train_losses) == 12
    np.testing.assert_allclose(from_dataset.train_losses[:8], from_arrays.train_losses[:8],
                               rtol=1e-5)


@pytest.mark.parametrize(("compile_args", "match", "fit_match"), [
    # set after compile (torch's compile refuses it, and so does its fit, before any callback)
    (dict(), "steps_per_execution=1, got 4", "steps_per_execution"),
    (dict(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(
        0.1, 10, 0.5))), "learning_rate is a LearningRateSchedule", None),
])
def test_refuses_what_it_cannot_drive(blobs, compile_args, match, fit_match):
    x, y = blobs
    model = mlp(**compile_args)
    if not compile_args:
        model.steps_per_execution = 4
    before = values(model.variables)
    for run, pattern in (
            (lambda: lk.find_lr(model, x, y, num_iters=5), match),
            (lambda: model.fit(x, y, verbose=0, callbacks=[lk.LRRangeTest(num_iters=5)]),
             fit_match or match)):
        with pytest.raises(ValueError, match=pattern) as info:
            run()
        assert "\n" not in str(info.value)
    for a, b in zip(before, values(model.variables), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_and_data(blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="num_iters must be an integer >= 2"):
        lk.LRRangeTest(num_iters=1)
    with pytest.raises(ValueError, match="rule must be one of"):
        lk.find_lr(mlp(), x, y, rule="best")
    with pytest.raises(ValueError, match="x is empty"):
        lk.find_lr(mlp(), x[:0], y[:0])
    with pytest.raises(ValueError, match="not compiled"):
        lk.find_lr(keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)]), x, y)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^model must be a Keras Model .* got Linear$"):
        lk.find_lr(torch.nn.Linear(8, 3), x, y)


class AddLoss(keras.Model):
    """An autoencoder whose only loss is its own (add_loss): fit takes x alone."""

    def __init__(self):
        super().__init__()
        self.code, self.out = keras.layers.Dense(2), keras.layers.Dense(8)

    def call(self, x):
        out = self.out(self.code(x))
        self.add_loss(keras.ops.mean((out - x) ** 2))
        return out


def test_arrays_without_y_as_fit_takes_them(blobs):
    x, _ = blobs
    keras.utils.set_random_seed(0)
    model = AddLoss()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    result = lk.find_lr(model, x, start_lr=1e-4, end_lr=1.0, num_iters=10)
    assert len(result.train_losses) == 10
    first = x[lk._sweep_order(len(x), 10 * 32, shuffle=True, seed=0)[:32]]  # the first batch
    out = lk._numpy(model(first))  # the weights are restored: the first step's loss again
    assert result.train_losses[0] == pytest.approx(float(np.mean((out - first) ** 2)), rel=1e-5)


def test_non_finite_first_loss_raises_after_restoring(blobs):
    x, y = blobs
    model = mlp()
    before = values(model.variables)
    with pytest.raises(FloatingPointError, match="at the first step"):
        lk.find_lr(model, np.full_like(x, np.nan), y, num_iters=5)
    for a, b in zip(before, values(model.variables), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(BACKEND != "torch", reason="compares with plain torch code")
def test_same_curve_as_lrtune_find_lr():
    """Keras on torch vs the core on the equivalent torch model: same initial weights, batch
    order and sweep, SGD without momentum (float64, so only the loss tracker rounds)."""
    import torch

    import lrtune

    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 8)) * 3
    y = np.arange(256) % 3
    x = centers[y] + rng.normal(size=(256, 8))
    model = mlp(optimizer=keras.optimizers.SGD(0.01), dtype="float64")
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    net = net.double()
    with torch.no_grad():
        for layer, dense in zip((net[0], net[2]), (model.layers[0], model.layers[1]),
                                strict=True):
            kernel, bias = values(dense.weights)
            layer.weight.copy_(torch.from_numpy(kernel.T))
            layer.bias.copy_(torch.from_numpy(bias))
    sweep = dict(start_lr=1e-3, end_lr=10.0, num_iters=60)
    ours = lk.find_lr(model, x, y, shuffle=False, **sweep)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32)
    core = lrtune.find_lr(net, torch.optim.SGD(net.parameters(), lr=0.01),
                          torch.nn.CrossEntropyLoss(), data, **sweep)
    assert ours.stop_reason == core.stop_reason
    np.testing.assert_allclose(ours.lrs, core.lrs, rtol=1e-12)
    # Keras' loss tracker sums in float32: ~1e-7 of the running total (60 batches of 32)
    np.testing.assert_allclose(ours.losses, core.losses, rtol=1e-5, atol=2e-5)
    assert ours.verdict == core.verdict
    assert ours.suggestions == pytest.approx(core.suggestions, rel=1e-6)


# -- schedules -------------------------------------------------------------------------------

def test_keras_schedule_values_and_round_trip():
    from lrtune.schedules import one_cycle

    schedule = one_cycle(0.1, total_steps=50)
    lr = lk.KerasSchedule(schedule, total_steps=50)
    got = [float(lk._numpy(lr(t))) for t in (0, 14, 30, 49, 80)]
    np.testing.assert_allclose(got, [schedule(t) for t in (0, 14, 30, 49, 49)], rtol=1e-6)
    opt = keras.optimizers.deserialize(keras.optimizers.serialize(
        keras.optimizers.SGD(learning_rate=lr)))
    again = opt._learning_rate
    assert isinstance(again, lk.KerasSchedule) and again.schedule == schedule
    with pytest.raises(ValueError, match="only lrtune's schedules"):
        lk.KerasSchedule(lambda t: 0.1, total_steps=3).get_config()
    with pytest.raises(ValueError, match="total_steps must be an integer > 0"):
        lk.KerasSchedule(schedule, total_steps=0)


def test_keras_schedule_drives_fit(blobs):
    from lrtune.schedules import linear

    x, y = blobs
    model = mlp(optimizer=keras.optimizers.SGD(lk.KerasSchedule(linear(0.1, 0.0, 7), 8)))
    probe = Probe()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[probe])
    np.testing.assert_allclose(probe.lrs, [0.1 * (1 - t / 7) for t in range(8)], atol=1e-7)


def test_seed_004_per_epoch_lr_down_momentum_up(blobs):
    from lrtune.schedules import linspace

    x, y = blobs
    model = mlp(optimizer=keras.optimizers.SGD(0.5, momentum=0.5))
    sched = lk.HyperparamScheduler(linspace(3, lr=(0.03, 1e-4), momentum=(0.9, 0.999)),
                                   interval="epoch")
    probe = Probe()
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[sched, probe])
    np.testing.assert_allclose(probe.lrs[::4], [0.03, 0.01505, 1e-4], rtol=1e-6)
    np.testing.assert_allclose(probe.momenta[::4], [0.9, 0.9495, 0.999], rtol=1e-12)
    assert sched.values() == pytest.approx({"lr": 1e-4, "momentum": 0.999})


@pytest.mark.parametrize("scaled", [False, True])
def test_scheduled_momentum_reaches_the_compiled_step(blobs, scaled):
    """Epoch 1 with lr 0 and momentum 0: the weights cannot move — unless the train step still
    used epoch 0's momentum (0.9) with its velocity, as a stale compiled step would. Under
    mixed precision's LossScaleOptimizer the momentum is its inner optimizer's."""
    from lrtune.schedules import constant, join

    x, y = blobs
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=1.0)
    model = mlp(optimizer=optimizer)
    step = {"lr": join([constant(0.1), constant(0.0)], [1]),
            "momentum": join([constant(0.9), constant(0.0)], [1])}
    probe = Probe()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0,
              callbacks=[lk.HyperparamScheduler(step, interval="epoch"), probe])
    for a, b in zip(*probe.epoch_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_per_batch_beta_1_on_adam(blobs):
    from lrtune.schedules import linear

    x, y = blobs
    model = mlp(optimizer=keras.optimizers.Adam(1e-3))
    probe = Probe()
    sched = lk.HyperparamScheduler({"momentum": linear(0.8, 0.9, 4)}, interval="batch")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[sched, probe])
    np.testing.assert_allclose(probe.momenta, [0.8, 0.825, 0.85, 0.875, 0.9, 0.9, 0.9, 0.9])
    assert model.optimizer.beta_1 == 0.9


def test_hyperparam_scheduler_refusals(blobs):
    from lrtune.schedules import constant

    x, y = blobs
    cases = [
        (keras.optimizers.SGD(0.1), {"momentum": constant(0.9)}, "momentum=0"),
        (keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)),
         {"lr": constant(0.1)}, "learning_rate is a LearningRateSchedule"),
        (keras.optimizers.SGD(0.1), {"beta_2": constant(0.9)}, "no float hyperparameter"),
    ]
    for optimizer, schedules, match in cases:
        with pytest.raises(ValueError, match=match):
            mlp(optimizer=optimizer).fit(x, y, verbose=0, callbacks=[
                lk.HyperparamScheduler(schedules)])
    with pytest.raises(ValueError, match="interval must be"):
        lk.HyperparamScheduler({"lr": constant(0.1)}, interval="step")


# -- the JAX backend -------------------------------------------------------------------------

@pytest.mark.skipif(BACKEND == "jax", reason="this is the JAX run")
def test_jax_backend():
    """Every test above, again with KERAS_BACKEND=jax (a fresh process: one backend each)."""
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(Path(__file__))], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
