"""Plain torch runs to compare the sweep against (a module of its own: ``from conftest import``
would clash with ``tests/conftest.py``, which pytest collects right after this folder)."""

from __future__ import annotations

import copy

import torch

from lrtune.data.batching import as_batches


def plain_run(model, make_opt, loss_fn, data, *, lr, steps, batch_size=16, seed=0,
              scheduler=None):
    """A separate plain torch run: the loop a user would write, seeded as the sweep is;
    ``scheduler(opt)`` builds a torch LR scheduler stepped after every optimizer step."""
    model = copy.deepcopy(model)
    opt = make_opt(model.parameters(), lr)
    sched = scheduler(opt) if scheduler is not None else None
    batches = as_batches(data, batch_size, shuffle=True, seed=seed)
    torch.manual_seed(seed)
    done = 0
    model.train()
    while done < steps:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                return model, done
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            done += 1
            if done == steps:
                break
    return model, done


def assert_same_weights(model, state, rtol=1e-5, atol=1e-6):
    for name, ref in model.state_dict().items():
        torch.testing.assert_close(state[name], ref, rtol=rtol, atol=atol, msg=name)
