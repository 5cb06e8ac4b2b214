"""A trained model back from its checkpoint: rebuilt from the settings saved beside its weights.

Checkpoints hold a state dict (never a pickled object, unlike seed 004's ``pickle.dump``) and
``extra["model_spec"]``: the registry name and shapes that rebuild the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPEC_KEYS = frozenset({"name", "in_features", "n_outputs", "input_shape", "task", "dataset"})


def model_spec(name: str, splits) -> dict[str, Any]:
    """What :func:`load_trained` needs to rebuild a registry model trained on ``splits``."""
    return {"name": name, "in_features": splits.in_features, "n_outputs": splits.n_outputs,
            "input_shape": list(splits.input_shape), "task": splits.task,
            "class_names": splits.class_names, "dataset": splits.name}


def checkpoint_of(path: str | Path) -> Path:
    """The checkpoint a path names: a file as is; a run folder's ``checkpoints/best.pt``, or
    ``train/checkpoints/best.pt`` in an ``lrtune demo`` folder (its run is in ``train/``)."""
    path = Path(path)
    if not path.is_dir():
        return path
    best = path / "checkpoints" / "best.pt"
    demo = path / "train" / "checkpoints" / "best.pt"
    return demo if not best.exists() and demo.exists() else best


def load_trained(path: str | Path):
    """Rebuild the model saved in a checkpoint (or a run folder: its ``checkpoints/best.pt``,
    see :func:`checkpoint_of`).

    Returns:
        ``(model, spec)``: the model in eval mode with the saved weights, and its spec dict.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: not an lrtune checkpoint, no model spec, or weights that do not fit.
    """
    from lrtune.models import build_model
    from lrtune.training.checkpoint_io import check_model_state, load_checkpoint

    path = checkpoint_of(path)
    state = load_checkpoint(path)
    extra = state.get("extra")
    spec = extra.get("model_spec") if isinstance(extra, dict) else None
    if not (isinstance(spec, dict) and spec.keys() >= SPEC_KEYS):
        raise ValueError(f"{path} has no model spec: it was not written by `lrtune train`; "
                         "rebuild the model yourself and load state['model']")
    if ":" in str(spec["name"]):  # a --model pkg.module:factory, not a registry name
        raise ValueError(f"{path} holds a model built by the factory {spec['name']}; only "
                         "registry models are rebuilt here: build it with that factory and "
                         "load_state_dict(lrtune.training.checkpoint_io.load_checkpoint(path)"
                         "['model'])")
    model = build_model(spec["name"], spec["in_features"], spec["n_outputs"],
                        input_shape=tuple(spec["input_shape"]))
    check_model_state(model, state["model"], str(path))
    model.load_state_dict(state["model"])
    return model.eval(), spec
