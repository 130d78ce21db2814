"""Train the CNN on the real MNIST training set, deterministically, on CPU.

    python -m mnist_serve.train --out artifacts/model

Writes `mnist_cnn.pt` and `metadata.json` (test accuracy, data checksums,
torch version, sha256 of the weights). Skips training when valid weights
are already there, so build steps can call it unconditionally.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mnist_serve import data
from mnist_serve.model import MNISTNet
from mnist_serve.preprocessing import to_model_input
from mnist_serve.weights import METADATA_FILE, read_metadata, sha256

WEIGHTS_FILE = "mnist_cnn.pt"
MIN_TEST_ACCURACY = 0.99


def evaluate(model: MNISTNet, split: data.MNIST, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(split.labels), batch_size):
            images = split.images[start : start + batch_size]
            labels = torch.from_numpy(split.labels[start : start + batch_size])
            correct += (model(to_model_input(images)).argmax(1) == labels).sum().item()
    return correct / len(split.labels)


def fit(
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    on_epoch=lambda epoch, loss: None,
) -> MNISTNet:
    """Adam with a one-cycle learning rate: converges within a CI-sized budget.

    Seeded, with deterministic kernels: the same inputs give the same weights.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    model = MNISTNet()
    optimizer = torch.optim.Adam(model.parameters())
    steps_per_epoch = -(-len(labels) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, epochs=epochs, steps_per_epoch=steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(labels), generator=shuffle)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.nll_loss(model(to_model_input(images[idx])), labels[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
        on_epoch(epoch, loss.item())
    return model.eval()


def train(epochs: int, seed: int) -> tuple[MNISTNet, dict[str, data.MNIST]]:
    splits = {"train": data.load("train"), "test": data.load("test")}
    started = time.monotonic()

    def report(epoch: int, loss: float) -> None:
        print(f"epoch {epoch}/{epochs}: loss {loss:.4f} ({time.monotonic() - started:.0f}s)", flush=True)

    images, labels = (torch.from_numpy(a) for a in (splits["train"].images, splits["train"].labels))
    return fit(images, labels, epochs, seed, on_epoch=report), splits


def is_valid(out: Path) -> bool:
    """True when `out` holds weights that match their metadata and pass the bar."""
    weights = out / WEIGHTS_FILE
    metadata = read_metadata(weights) if weights.is_file() else None
    return bool(
        metadata
        and metadata.get("weights_sha256") == sha256(weights)
        and metadata.get("test_accuracy", 0) >= MIN_TEST_ACCURACY
        and metadata.get("data_md5") == data.PUBLISHED_MD5
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/model"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="retrain even if valid weights exist")
    args = parser.parse_args(argv)

    if not args.force and is_valid(args.out):
        print(f"valid weights already in {args.out}; skipping training (--force retrains)")
        return 0
    model, splits = train(args.epochs, args.seed)
    test_set = splits["test"]
    accuracy = evaluate(model, test_set)
    if accuracy < MIN_TEST_ACCURACY:
        print(f"test accuracy {accuracy:.4f} is below {MIN_TEST_ACCURACY}; not saving", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / WEIGHTS_FILE
    torch.save(model.state_dict(), weights)
    metadata = {
        "test_accuracy": accuracy,
        "test_images": int(len(test_set.labels)),
        "data_md5": {name: split.md5 for name, split in splits.items()},
        "weights_sha256": sha256(weights),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "epochs": args.epochs,
        "seed": args.seed,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (args.out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"wrote {weights} (test accuracy {accuracy:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
