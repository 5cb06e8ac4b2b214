"""Seed 004 with the public API: a keypoint CNN trained with Nesterov SGD while the learning
rate falls linearly 0.03 -> 0.0001 and the momentum rises 0.9 -> 0.999, without and with
horizontal-flip augmentation, side by side.

    ./dev python examples/seed004_lr_momentum.py                        # synthetic faces, offline
    ./dev python examples/seed004_lr_momentum.py --dataset facial-keypoints --data-dir DIR

(`lrtune compare --recipes examples/seed004_compare.toml` runs the same with a report.)
"""

import argparse

import torch

import lrtune
from lrtune.models import keypoint_cnn
from lrtune.schedules import HyperparamScheduler, linspace


def train(splits, epochs: int, augment: str | None) -> lrtune.History:
    torch.manual_seed(0)
    model = keypoint_cnn(splits.input_shape, splits.n_outputs)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True)
    schedule = HyperparamScheduler(
        optimizer, linspace(epochs, lr=(0.03, 1e-4), momentum=(0.9, 0.999)), interval="epoch")
    trainer = lrtune.Trainer(model, optimizer, torch.nn.MSELoss(), schedules=schedule,
                             augment=lrtune.make_augment(augment, splits) if augment else None,
                             verbose=0)
    return trainer.fit(splits.train, splits.valid, epochs=epochs, batch_size=64)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic-faces")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)

    splits = lrtune.load_dataset(args.dataset, data_dir=args.data_dir)
    for augment in (None, "flip"):
        history = train(splits, args.epochs, augment)
        print(f"\n{'with flip' if augment else 'no augmentation'}")
        print(" Epoch | Train loss | Valid loss | Train / Val")
        for row in history.epochs:
            print(f"{row['epoch']:>6} | {row['train_loss']:10.6f} | {row['valid_loss']:10.6f} | "
                  f"{row['train_valid_ratio']:10.6f}")


if __name__ == "__main__":
    main()
