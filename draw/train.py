"""Train DRAW on binarized MNIST.

    python -m draw.train --data-dir ../shared/data --run runs/attention --export checkpoints/mnist_attention_T64

Resumable: the run directory holds `state.pt` (weights, optimizer, RNG, position in the epoch),
written atomically every --save-every steps and at each epoch's end. Rerunning the same
command continues where it stopped; Ctrl-C saves first. The model is exported to --export as a
safetensors checkpoint at each epoch's end.
"""

import argparse
import datetime
import json
import math
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from draw import checkpoint
from draw.config import DrawConfig
from draw.data import DataError, data_dir, load_binarized_mnist, load_mnist
from draw.model import DRAW

STATE = "state.pt"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="MNIST directory (default: $DRAW_DATA_DIR)")
    p.add_argument("--run", required=True, help="directory for the resumable training state")
    p.add_argument("--export", help="checkpoint directory written at each epoch's end")
    p.add_argument("--train-split", choices=["train", "train+valid"], default="train+valid")
    p.add_argument(
        "--binarize",
        choices=["static", "dynamic"],
        default="static",
        help="static: the standard binarized MNIST; dynamic: resample grey MNIST each batch",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=1.0, help="learning-rate factor per epoch")
    p.add_argument("--clip", type=float, default=10.0, help="gradient-norm clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=200, help="steps between resumable saves")
    p.add_argument("--val-size", type=int, default=2000, help="validation images (0 to skip)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    defaults = DrawConfig()
    for f in fields(DrawConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=f.default, metavar="BOOL")
        else:
            p.add_argument(flag, type=type(getattr(defaults, f.name)), default=f.default)
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> DrawConfig:
    return DrawConfig(**{f.name: getattr(args, f.name) for f in fields(DrawConfig)})


def load_training_data(root, split: str, binarize: str, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images (n, 28, 28) in [0, 1] (grey when dynamic) and binary validation images.

    Validation is the first val_size images of binarized 'valid' (part of the training set
    when --train-split is train+valid, then it only tracks the fit, it selects nothing)."""
    valid = load_binarized_mnist(root, "valid")
    if binarize == "dynamic":
        train = load_mnist(root, "train")[0]
    else:
        parts = ["train", "valid"] if split == "train+valid" else ["train"]
        train = np.concatenate([valid if s == "valid" else load_binarized_mnist(root, s) for s in parts])
    return torch.from_numpy(train), torch.from_numpy(valid[:val_size])


def batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch `epoch`: a function of (seed, epoch) alone, so resuming replays it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def binarize_batch(x: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """Bernoulli sample of grey images, reproducible per (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.bernoulli(x, generator=g)


@torch.no_grad()
def evaluate_bound(model: DRAW, images: torch.Tensor, batch_size: int = 500) -> dict:
    """Mean NLL bound (beta = 1 ELBO), reconstruction and KL in nats over images (n, H, W)."""
    model.eval()
    recon = kl = 0.0
    device = model.head.weight.device
    for i in range(0, len(images), batch_size):
        out = model(images[i : i + batch_size].to(device))
        recon += out.recon.sum().item()
        kl += out.kl.sum().item()
    model.train()
    n = len(images)
    return {"nll": (recon + kl) / n, "recon": recon / n, "kl": kl / n}


def check_writable(directory: Path) -> None:
    """Fail before training, not after the first epoch, if directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"error: cannot write to {directory}: {e}") from e


def save_state(run: Path, model, optimizer, progress: dict) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "config": json.dumps(model.cfg.to_dict()),
        "progress": json.dumps(progress),
    }
    checkpoint.atomic_write(run / STATE, lambda p: torch.save(state, p))


def train(args: argparse.Namespace) -> dict:
    """Run (or resume) training; returns the final progress record."""
    run = Path(args.run)
    for d in (run, Path(args.export) if args.export else None):
        if d is not None:
            check_writable(d)
    root = data_dir(args.data_dir)
    if root is None:
        raise SystemExit("error: no data directory: pass --data-dir or set $DRAW_DATA_DIR")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)

    cfg = config_from_args(args)
    model = DRAW(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    progress = {"epoch": 0, "batch": 0, "step": 0, "seconds": 0.0, "history": []}
    if (run / STATE).exists():
        state = torch.load(run / STATE, map_location=device, weights_only=True)
        saved_cfg = DrawConfig.from_dict(json.loads(state["config"]))
        if saved_cfg != cfg:
            raise SystemExit(f"error: {run} was trained with {saved_cfg}, not {cfg}; use another --run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        progress = json.loads(state["progress"])
        print(f"resuming {run} at epoch {progress['epoch']}, step {progress['step']}")

    try:
        train_x, val_x = load_training_data(root, args.train_split, args.binarize, args.val_size)
    except DataError as e:
        raise SystemExit(f"error: {e}") from e
    n_batches = len(train_x) // args.batch_size
    started = time.time() - progress["seconds"]

    def save():
        progress["seconds"] = time.time() - started
        save_state(run, model, optimizer, progress)

    model.train()
    try:
        while progress["epoch"] < args.epochs:
            epoch = progress["epoch"]
            order = batch_order(len(train_x), args.seed, epoch)
            bar = tqdm(
                range(progress["batch"], n_batches),
                desc=f"epoch {epoch + 1}/{args.epochs}",
                initial=progress["batch"],
                total=n_batches,
                dynamic_ncols=True,
            )
            for b in bar:
                step = progress["step"]
                lr = args.lr * args.lr_decay ** (step / n_batches)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = train_x[order[b * args.batch_size : (b + 1) * args.batch_size]]
                if args.binarize == "dynamic":
                    x = binarize_batch(x, args.seed, step)
                loss, out = model.loss(x.to(device))
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {step}; stopped, the last good state is in {run / STATE}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                progress["step"] += 1
                progress["batch"] = b + 1
                bar.set_postfix(loss=f"{loss.item():.2f}", kl=f"{out.kl.sum(1).mean().item():.2f}", lr=f"{lr:.1e}")
                if progress["step"] % args.save_every == 0:
                    save()
                if args.max_steps and progress["step"] >= args.max_steps:
                    save()
                    return progress
            bar.close()
            progress["epoch"] += 1
            progress["batch"] = 0
            record = {"epoch": progress["epoch"], "step": progress["step"], "train_loss": loss.item()}
            if len(val_x):
                record.update({f"val_{k}": v for k, v in evaluate_bound(model, val_x).items()})
            progress["history"].append(record)
            tqdm.write(json.dumps(record))
            save()
            if args.export:
                export(model, args, progress)
    except KeyboardInterrupt:
        save()
        print(f"\ninterrupted: saved {run / STATE} at step {progress['step']}; rerun the same command to resume")
        raise SystemExit(130) from None
    except FloatingPointError as e:
        raise SystemExit(f"error: {e}") from e
    return progress


def export(model: DRAW, args: argparse.Namespace, progress: dict) -> None:
    """Write the safetensors checkpoint; a test bound recorded earlier by evaluate is dropped,
    since it no longer describes these weights."""
    metadata = {
        "trained_on": f"binarized MNIST {args.train_split}"
        if args.binarize == "static"
        else "MNIST train (60k), dynamically binarized",
        "epochs": progress["epoch"],
        "steps": progress["step"],
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "seed": args.seed,
        "train_seconds": round(progress["seconds"]),
        "date": datetime.date.today().isoformat(),
        "history": progress["history"],
    }
    checkpoint.save(model, args.export, metadata)


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
