"""Learning-rate-free optimizers by name: Prodigy, Schedule-Free AdamW/SGD, D-Adaptation Adam.

They come from their PyPI packages (``pip install 'lrtune[lrfree]'``), imported only when one is
asked for. Each is built with its authors' documented defaults (``lr=1.0`` for Prodigy and
D-Adaptation, which multiply it by their estimate ``d``; Schedule-Free's own ``lr`` defaults,
with the linear warmup its authors recommend). The helpers here tell the rest of lrtune what is
special about them: the range test does not apply (:func:`refuse_range_test`), Schedule-Free
keeps two points that the Trainer switches between (:func:`is_schedule_free`), and the step size
that Prodigy and D-Adaptation actually take is ``d * lr`` (:func:`effective_lrs`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI reads LR_FREE for --help, which must not import torch
    import torch

# name -> (PyPI package, module, class)
LR_FREE: dict[str, tuple[str, str, str]] = {
    "prodigy": ("prodigyopt", "prodigyopt", "Prodigy"),
    "schedulefree-adamw": ("schedulefree", "schedulefree", "AdamWScheduleFree"),
    "schedulefree-sgd": ("schedulefree", "schedulefree", "SGDScheduleFree"),
    "dadapt-adam": ("dadaptation", "dadaptation", "DAdaptAdam"),
}
# Schedule-Free's warmup: 2 % of the planned steps, the warmup_factor of its authors' AlgoPerf
# self-tuning submission (their README: "using learning rate warmup is recommended").
SCHEDULE_FREE_WARMUP = 0.02


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class behind a learning-rate-free ``name``, imported now.

    Raises:
        ValueError: an unknown name.
        ImportError: the package is not installed (one line naming the extra).
    """
    if name not in LR_FREE:
        raise ValueError(f"unknown learning-rate-free optimizer {name!r}; "
                         f"choose from {', '.join(LR_FREE)}")
    package, module, cls = LR_FREE[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError:
        raise ImportError(f"--optimizer {name} needs the {package} package: "
                          "pip install 'lrtune[lrfree]'") from None


def default_lr(name: str) -> float:
    """The ``lr`` default of the optimizer's own signature (read, not copied).

    Examples:
        >>> default_lr("prodigy"), default_lr("schedulefree-adamw")
        (1.0, 0.0025)
    """
    return float(inspect.signature(optimizer_class(name)).parameters["lr"].default)


def make_lr_free(name: str, params, *, lr: float | None = None, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Build a learning-rate-free optimizer with its documented defaults.

    Args:
        name: ``prodigy``, ``schedulefree-adamw``, ``schedulefree-sgd`` or ``dadapt-adam``.
        params: the model's parameters.
        lr: ``None`` for the package's default; for Prodigy and D-Adaptation a multiplier of
            their estimate (their authors: leave it at 1.0).
        momentum: non-zero sets beta1 (Schedule-Free SGD: its momentum); 0 keeps the default.
        weight_decay: passed as is (each package's own convention: decoupled for Prodigy).
    """
    cls = optimizer_class(name)
    kwargs: dict[str, Any] = {"lr": default_lr(name) if lr is None else lr,
                              "weight_decay": weight_decay}
    if momentum:
        if name == "schedulefree-sgd":
            kwargs["momentum"] = momentum
        else:
            kwargs["betas"] = (momentum, 0.999)
    return cls(params, **kwargs)


def is_lr_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is one of :data:`LR_FREE` (or a subclass)."""
    mro = {(c.__module__.split(".")[0], c.__name__) for c in type(optimizer).__mro__}
    return any((module, cls) in mro for _, module, cls in LR_FREE.values())


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Schedule-Free optimizers keep a ``train_mode`` flag and ``train()``/``eval()`` switches."""
    return callable(getattr(optimizer, "eval", None)) and callable(
        getattr(optimizer, "train", None)) and "train_mode" in optimizer.param_groups[0]


def refuse_range_test(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError when the range test does not apply to ``optimizer``.

    Examples:
        >>> import torch
        >>> refuse_range_test(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    """
    if is_lr_free(optimizer):
        raise ValueError(
            f"the learning-rate range test does not apply to {type(optimizer).__name__}: it sets "
            "its own step size; train it with its default lr instead of searching one")


def effective_lrs(optimizer: torch.optim.Optimizer) -> list[float] | None:
    """``d * lr`` per param group for optimizers that estimate ``d`` (Prodigy, D-Adaptation).

    Returns ``None`` for every other optimizer.
    """
    groups = optimizer.param_groups
    if not all("d" in g for g in groups):
        return None
    return [float(g["d"]) * float(g["lr"]) for g in groups]


def set_run_length(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """Give Schedule-Free its recommended warmup once the run's length is known.

    Examples:
        >>> import torch
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> opt = make_lr_free("schedulefree-adamw", [p])
        >>> set_run_length(opt, 1000); opt.param_groups[0]["warmup_steps"]
        20
    """
    for group in optimizer.param_groups:
        if "warmup_steps" in group and is_schedule_free(optimizer):
            group["warmup_steps"] = round(SCHEDULE_FREE_WARMUP * total_steps)
