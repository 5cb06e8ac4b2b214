"""Seed 000 with the public API: range test -> chosen rate -> re-initialised model trained with
early stopping, checkpoints and TensorBoard -> test accuracy.

    ./dev python examples/seed000_lr_range_test.py                      # digits, offline
    ./dev python examples/seed000_lr_range_test.py --dataset fashion-mnist --data-dir DIR
"""

import argparse
from pathlib import Path

import torch

import lrtune
from lrtune.data.figures import plot_sample_grid
from lrtune.models import mlp


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/example_seed000"))
    args = parser.parse_args(argv)

    splits = lrtune.load_dataset(args.dataset, data_dir=args.data_dir)
    plot_sample_grid(*splits.train, splits.class_names, path=args.out / "sample_grid.png")

    torch.manual_seed(0)
    model = mlp(splits.in_features, splits.n_outputs)  # Flatten -> 300 -> 100 -> classes
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    # the range test puts model, optimizer and RNG back exactly: training starts from the
    # same fresh initialisation the sweep saw
    result = lrtune.find_lr(model, optimizer, loss_fn, splits.train)
    result.save(args.out)  # lr_find.png + lr_find.json
    print(result.summary())
    if result.suggested_lr is None:
        raise SystemExit(f"no learning rate: {result.reason}")
    for group in optimizer.param_groups:
        group["lr"] = result.suggested_lr

    trainer = lrtune.Trainer(
        model, optimizer, loss_fn, metrics=["accuracy"], verbose=2,
        callbacks=[lrtune.EarlyStopping("valid_loss", patience=10, restore_best_weights=True),
                   lrtune.Checkpoint(args.out / "checkpoints"),
                   lrtune.TensorBoard(args.out / "tensorboard")],
    )
    trainer.fit(splits.train, splits.valid, epochs=args.epochs, batch_size=32)
    test = trainer.evaluate(splits.test)
    print(f"test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")


if __name__ == "__main__":
    main()
