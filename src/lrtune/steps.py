"""The step protocol: how one batch becomes a loss, shared by the range test, sweep and Trainer.

A *step* is a plain function ``step(model, batch)`` (the idea of Lightning's ``training_step``
and Hugging Face's ``compute_loss``). ``batch`` is whatever the data yields, already on the
device. It returns either

- a 0-d loss tensor, or
- a mapping with a ``"loss"`` entry and, optionally, ``"output"`` and ``"target"`` (what
  metrics see; ``"logits"`` is taken as the output when there is no ``"output"``; an output
  that is not a tensor is read by :func:`primary_output`), or
- an object with a ``.loss`` attribute (a Hugging Face ``ModelOutput``; its ``.logits`` is the
  output).

Without a step, the default is ``loss_fn(primary_output(model(x)), y)`` for ``batch = (x, y,
*rest)``. :class:`StepRunner` is the one implementation of the device transfer, the step,
mixed precision (autocast + ``GradScaler``), backward, clipping and the optimizer step.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2)
    >>> def step(model, batch):
    ...     logits = model(batch["x"])
    ...     return {"loss": nn.functional.cross_entropy(logits, batch["y"]), "output": logits}
    >>> batch = {"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 1, 0])}
    >>> result = run_step(step, model, batch)
    >>> result.loss.shape, result.output.shape, result.target is batch["y"]
    (torch.Size([]), torch.Size([4, 2]), True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

Step = Callable[[nn.Module, Any], Any]

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
_TARGET_KEYS = ("labels", "label", "target", "targets", "y")
# GradScaler skips in a row that mean the gradients are never finite: the scale halves at each
# skip, so by then it is 2**-48 and no finite gradient could still overflow
MAX_SKIPPED_STEPS = 64


class StepResult(NamedTuple):
    """What one step produced: the loss, and what metrics see (``None`` when unknown)."""

    loss: torch.Tensor
    output: Any = None
    target: Any = None


# -- device transfer -------------------------------------------------------------------------
def _move(leaf: Any, device: torch.device) -> Any:
    if isinstance(leaf, torch.Tensor):
        return leaf if leaf.device == device else leaf.to(device, non_blocking=True)
    if dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
        # torch's pytree does not know dataclasses: rebuild one field by field
        moved = {f.name: to_device(getattr(leaf, f.name), device)
                 for f in dataclasses.fields(leaf) if f.init}
        return dataclasses.replace(leaf, **moved)
    if callable(getattr(leaf, "to", None)) and not isinstance(leaf, nn.Module):
        return leaf.to(device)  # e.g. a Hugging Face BatchEncoding (a UserDict, opaque to pytree)
    return leaf


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` with every tensor on ``device``: tensors nested anywhere in dicts, lists, tuples,
    namedtuples (torch's pytree), dataclasses and objects with a ``.to`` method are moved.

    Examples:
        >>> from collections import namedtuple
        >>> Pair = namedtuple("Pair", "x y")
        >>> out = to_device({"a": [torch.zeros(1)], "b": Pair(torch.ones(1), 3)}, "cpu")
        >>> type(out["b"]).__name__, out["b"].y
        ('Pair', 3)
    """
    device = torch.device(device)
    if isinstance(batch, tuple | list) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch):
        return batch  # the common (x, y) case: nothing to move, no tree walk
    return tree_map(lambda leaf: _move(leaf, device), batch)


def batch_size_of(result: StepResult, batch: Any) -> int:
    """Samples in a batch: the target's first dimension, else the first tensor's in the batch."""
    target = result.target
    if isinstance(target, torch.Tensor) and target.dim():  # the common case, without a tree walk
        return len(target)
    for candidate in (result.target, batch):
        leaves = [t for t in tree_flatten(candidate)[0] if isinstance(t, torch.Tensor)]
        if leaves:
            return len(leaves[0]) if leaves[0].dim() else 1
    return 1


# -- outputs and targets ---------------------------------------------------------------------
def primary_output(output: Any) -> Any:
    """The part of a model's output that losses and metrics read by default: a tensor as is;
    ``.logits`` of an object or mapping that has it; else a mapping's ``"output"`` entry or first
    value; else the first element of a tuple or list (``(logits, aux)``).

    Examples:
        >>> primary_output((torch.zeros(2), "aux")).shape
        torch.Size([2])
        >>> primary_output({"logits": torch.ones(1), "hidden": None})
        tensor([1.])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for key in ("logits", "output"):
            if output.get(key) is not None:
                return output[key]
        return next(iter(output.values()), None)
    if getattr(output, "logits", None) is not None:
        return output.logits
    if isinstance(output, tuple | list) and output:
        return output[0]
    return output


def target_of(batch: Any) -> Any:
    """The target in a batch, for metrics: ``labels`` (``label``, ``target``, ``targets``,
    ``y``) of a mapping, else the second element of a tuple or list; ``None`` when there is none.
    """
    if isinstance(batch, Mapping):
        return next((batch[k] for k in _TARGET_KEYS if k in batch), None)
    if isinstance(batch, tuple | list) and len(batch) >= 2:
        return batch[1]
    return None


def is_pair(batch: Any) -> bool:
    """Whether ``batch`` is an ``(inputs, targets, *rest)`` tuple or list."""
    return isinstance(batch, tuple | list) and len(batch) >= 2


def describe_batch(batch: Any) -> str:
    """A batch's kind for an error message: ``a dict with keys [...]``, ``a Tensor`` …"""
    if isinstance(batch, Mapping):
        return f"a dict with keys {sorted(map(str, batch))}"
    if isinstance(batch, tuple | list):
        return f"a {type(batch).__name__} of {len(batch)}"
    return f"a {type(batch).__name__}"


def default_step(loss_fn: Callable[[Any, Any], torch.Tensor]) -> Step:
    """The step for ``(x, y, *rest)`` batches: ``loss_fn(primary_output(model(x)), y)``."""

    def step(model: nn.Module, batch: Any) -> StepResult:
        if not is_pair(batch):
            raise TypeError(
                f"the default step needs (inputs, targets) batches, but the data yields "
                f"{describe_batch(batch)}; pass step=fn, where fn(model, batch) returns the loss"
            )
        x, y = batch[0], batch[1]
        output = primary_output(model(x))
        return StepResult(loss_fn(output, y), output, y)

    step.default = True  # type: ignore[attr-defined]  # lets the sweep use its fast engines
    return step


def resolve_step(step: Step | None, loss_fn: Callable | None) -> Step:
    """The step to run: ``step`` when given, else the default step around ``loss_fn``."""
    if step is not None:
        if not callable(step) or isinstance(step, type):
            raise TypeError(f"step must be callable as step(model, batch), got "
                            f"{type(step).__name__}")
        _check_arity("step", step, "step(model, batch)")
        return step
    if loss_fn is None:
        raise TypeError("give loss_fn (used as loss_fn(model(x), y)) or step=fn(model, batch)")
    if isinstance(loss_fn, type):  # nn.CrossEntropyLoss without (): it would build a module
        raise TypeError(f"loss_fn is the class {loss_fn.__name__}; pass an instance: "
                        f"{loss_fn.__name__}()")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    _check_arity("loss_fn", loss_fn, "loss_fn(output, target)")
    return default_step(loss_fn)


def _check_arity(name: str, fn: Callable, usage: str) -> None:
    """A TypeError naming ``name`` when ``fn`` cannot take two positional arguments (rather
    than Python's "takes 1 positional argument but 2 were given" from inside the loop)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call tell
        return
    try:
        signature.bind(None, None)
    except TypeError as exc:
        raise TypeError(f"{name} must be callable as {usage}, but {name}{signature} cannot: "
                        f"{exc}") from None


def as_result(value: Any, batch: Any) -> StepResult:
    """Normalise what a step returned to a :class:`StepResult` (target from the batch when the
    step did not say), checking that the loss is a 0-d tensor."""
    if isinstance(value, StepResult):
        result = value
    elif isinstance(value, torch.Tensor):
        result = StepResult(value)
    elif isinstance(value, Mapping):
        if "loss" not in value:
            raise TypeError(f"the step returned a mapping without a 'loss' entry (keys: "
                            f"{sorted(map(str, value))})")
        output = value.get("output", value.get("logits"))
        if output is not None and not isinstance(output, torch.Tensor):
            output = primary_output(output)  # a whole ModelOutput, or (logits, aux)
        result = StepResult(value["loss"], output, value.get("target"))
    elif hasattr(value, "loss"):
        result = StepResult(value.loss, getattr(value, "logits", None))
    else:
        raise TypeError(f"the step must return a loss tensor, a mapping with 'loss' or an object "
                        f"with .loss; got {type(value).__name__}")
    loss = result.loss
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"the loss must be a 0-d tensor (reduce it, e.g. with .mean()); got "
                         f"{shape}")
    if result.target is None:
        result = result._replace(target=target_of(batch))
    return result


def run_step(step: Step, model: nn.Module, batch: Any) -> StepResult:
    """Call ``step(model, batch)`` and normalise what it returns (see :func:`as_result`)."""
    return as_result(step(model, batch), batch)


# -- precision, backward, clipping, the optimizer step ---------------------------------------
def check_precision(precision: Any) -> str:
    """``"32"`` (also ``32``, ``"32-true"``), ``"bf16-mixed"`` or ``"16-mixed"`` (Lightning's
    names); anything else is a ValueError naming the choices."""
    value = "32" if str(precision) in ("32", "32-true") else precision
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return value


def _check_clip(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def autocast(precision: str, device: torch.device):
    """The autocast context of a precision on ``device`` (a no-op for ``"32"``)."""
    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class StepRunner:
    """One batch through the model and one optimizer step, the same way for every loop.

    Args:
        model, optimizer: as in a training loop.
        step: ``step(model, batch)`` (see the module docs), or ``None`` for the default step.
        loss_fn: the default step's loss; may be ``None`` when ``step`` is given.
        device: where batches go.
        precision: ``"32"``, ``"bf16-mixed"`` (autocast to bfloat16) or ``"16-mixed"``
            (autocast to float16 with a ``torch.amp.GradScaler``; a step whose gradients
            overflow is skipped, and :meth:`optimizer_step` says so).
        clip_grad_norm, clip_grad_value: clip the gradients of the optimizer's parameters (after
            unscaling) before each optimizer step.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 step: Step | None = None, loss_fn: Callable | None = None, *,
                 device: torch.device | str = "cpu", precision: str = "32",
                 clip_grad_norm: float | None = None,
                 clip_grad_value: float | None = None) -> None:
        self.model, self.optimizer = model, optimizer
        self.step_fn = resolve_step(step, loss_fn)
        self.device = torch.device(device)
        self.precision = check_precision(precision)
        self.clip_grad_norm = _check_clip("clip_grad_norm", clip_grad_norm)
        self.clip_grad_value = _check_clip("clip_grad_value", clip_grad_value)
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if self.precision == "16-mixed" else None)
        self._params: list[torch.Tensor] | None = None
        self._params_key: tuple = ()
        self.skipped_in_a_row = 0  # GradScaler skips since the last step taken

    @property
    def is_default(self) -> bool:
        """Whether this runs the default ``loss_fn(model(x), y)`` step."""
        return getattr(self.step_fn, "default", False)

    def autocast(self):
        """The precision's autocast context (a no-op for ``"32"``)."""
        return autocast(self.precision, self.device)

    def forward(self, batch: Any, model: nn.Module | None = None) -> StepResult:
        """Move ``batch`` to the device and run the step under autocast."""
        batch = to_device(batch, self.device)
        model = self.model if model is None else model
        if self.precision == "32":  # the default path: no context manager per batch
            return run_step(self.step_fn, model, batch)
        with self.autocast():
            return run_step(self.step_fn, model, batch)

    def backward(self, loss: torch.Tensor, scale: float = 1.0) -> None:
        """Backward of ``loss * scale`` (``scale`` < 1 averages accumulated micro-batches)."""
        if not loss.requires_grad:
            raise ValueError("the loss does not require grad: the step detached it (.item(), "
                             ".detach()), computed it under torch.no_grad(), or it does not "
                             "depend on the model's parameters")
        if scale != 1.0:
            loss = loss * scale
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def parameters(self) -> list[torch.Tensor]:
        """The optimizer's parameters (what clipping reads), also after ``add_param_group``
        (e.g. a callback unfreezing a backbone)."""
        groups = self.optimizer.param_groups
        key = tuple((id(g["params"]), len(g["params"])) for g in groups)
        if self._params is None or key != self._params_key:
            self._params = [p for g in groups for p in g["params"]]
            self._params_key = key
        return self._params

    def optimizer_step(self) -> bool:
        """Unscale, clip and step; ``False`` when the ``GradScaler`` skipped the step
        (non-finite gradients under ``"16-mixed"``)."""
        scaler, optimizer = self.scaler, self.optimizer
        clipping = self.clip_grad_norm is not None or self.clip_grad_value is not None
        if scaler is not None and clipping:
            scaler.unscale_(optimizer)
        if self.clip_grad_value is not None:
            nn.utils.clip_grad_value_(self.parameters(), self.clip_grad_value)
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.parameters(), self.clip_grad_norm)
        if scaler is None:
            optimizer.step()
            return True
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        taken = scaler.get_scale() >= before  # the scale backs off exactly when a step is skipped
        self.skipped_in_a_row = 0 if taken else self.skipped_in_a_row + 1
        return taken

    @property
    def never_finite(self) -> bool:
        """Whether the GradScaler skipped :data:`MAX_SKIPPED_STEPS` steps in a row: the
        gradients are inf/NaN at every step, whatever the scale."""
        return self.skipped_in_a_row >= MAX_SKIPPED_STEPS

    @staticmethod
    def never_finite_message(lr: float) -> str:
        """What to tell the user when :attr:`never_finite` (one wording for every loop)."""
        return (f"the GradScaler skipped {MAX_SKIPPED_STEPS} optimizer steps in a row at lr "
                f"{lr:.4g}: the gradients are inf/NaN at every step although the loss is "
                "finite; check the model and the loss for operations with infinite gradients "
                "(e.g. sqrt at 0), or use precision='bf16-mixed' or '32'")

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state (``None`` without one): part of a checkpoint."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


@contextlib.contextmanager
def probing(model: nn.Module):
    """Eval mode, no gradients and the RNG state kept: one look at what the model does with a
    batch that leaves no trace (dropout draws nothing from the training stream); the model's
    train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            yield
    finally:
        model.train(was_training)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error keeps of torch's multi-line ones."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_device(model: nn.Module) -> torch.device:
    """Where ``model`` lives: its first parameter's device (the CPU without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def check_batch_fits(runner: StepRunner, batches, what: str,
                     model: nn.Module | None = None) -> StepResult | None:
    """Run ``runner``'s step (forward and loss, no gradients) on the first batch of ``batches``
    so data that does not fit the model fail at once, as one ``ValueError`` naming ``what``,
    rather than after a range test or a training epoch. The RNG state and the model's
    train/eval mode are left as they were. ``model``: the one to run (default the runner's;
    the Trainer passes the module inside DDP).

    Returns:
        The step's result on that batch (``None`` for empty data).

    Raises:
        ValueError: ``the {what} does not fit the model: <the first line of torch's error>``.
    """
    model = runner.model if model is None else model
    try:
        with probing(model):
            batch = next(iter(batches), None)
            return None if batch is None else runner.forward(batch, model=model)
    except (RuntimeError, IndexError) as exc:
        raise ValueError(f"the {what} does not fit the model: {first_line(exc)}") from exc
