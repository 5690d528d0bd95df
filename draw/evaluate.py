"""Measure a checkpoint's negative log-likelihood bound on the binarized MNIST test set.

    python -m draw.evaluate checkpoints/mnist_attention_T64 --data-dir ../shared/data \\
        [--passes 10] [--iw-samples 100] [--record]

Prints the bound -ELBO = E_q[-log p(x|z)] + sum_t KL_t in nats (beta = 1, whatever beta the
model was trained with), averaged over all test images (one sample of z per image, or the mean
of --passes samples, with the estimate's Monte Carlo standard error), and optionally the tighter
importance-weighted estimate -log 1/k sum_i p(x, z_i) / q(z_i | x) (Burda et al. 2016), and how
many latents z_t,d are active (their posterior mean varies across images).
--record writes the figures into the checkpoint's config.json.

--split train+valid measures the same on the 60,000 training images instead, to tell underfitting
from overfitting; --resample scores a fresh Bernoulli sample of the same digits' grey images
(grey MNIST: the test digits for test, the training digits for train+valid) in place of the
standard binarization, to tell how much a model learned of that one binarization's noise.
"""

import argparse
import datetime
import math

import numpy as np
import torch
from tqdm import tqdm

from draw import checkpoint
from draw.data import DataError, data_dir, load_binarized_mnist, load_mnist
from draw.model import DRAW
from draw.trace import reconstruct


@torch.inference_mode()
def nll_bound(
    model: DRAW, images: torch.Tensor, batch_size: int = 500, seed: int = 0, passes: int = 1, progress: bool = True
) -> dict:
    """Mean -ELBO (beta = 1), reconstruction and KL in nats over images (n, H, W), each image's
    terms averaged over `passes` samples of z ~ q(z|x); with passes > 1 also "nll_se",
    the Monte Carlo standard error of the bound (the spread of the per-pass means over sqrt(passes)).
    The noise comes from `seed` alone, so two calls (two epochs of a training run) see the same draws."""
    device = model.head.weight.device
    c = model.cfg
    g = torch.Generator().manual_seed(seed)
    recon, kl = torch.zeros(passes, dtype=torch.float64), torch.zeros(passes, dtype=torch.float64)
    batches = [(p, i) for p in range(passes) for i in range(0, len(images), batch_size)]
    for p, i in tqdm(batches, desc="bound", leave=False, disable=not progress):
        x = images[i : i + batch_size]
        out = model(x.to(device), torch.randn(len(x), c.T, c.z_size, generator=g).to(device))
        recon[p] += out.recon.sum().item()
        kl[p] += out.kl.sum().item()
    n = len(images)
    nll = (recon + kl) / n  # (passes,), one estimate of the bound per pass
    result = {"nll": nll.mean().item(), "recon": recon.mean().item() / n, "kl": kl.mean().item() / n}
    if passes > 1:
        result["nll_se"] = (nll.std() / math.sqrt(passes)).item()
    return result


@torch.inference_mode()
def iw_nll(model: DRAW, images: torch.Tensor, k: int, batch_size: int = 500, seed: int = 0) -> float:
    """Importance-weighted NLL estimate with k samples per image, nats, mean over images."""
    torch.manual_seed(seed)
    device = model.head.weight.device
    per_batch = max(1, batch_size // k)
    total = 0.0
    for i in tqdm(range(0, len(images), per_batch), desc=f"IW k={k}", leave=False):
        x = images[i : i + per_batch].to(device)
        xs = x.repeat_interleave(k, dim=0)  # (n * k, H, W), k samples of each image in a row
        out = model(xs)
        log_w = (out.log_pz_qz - out.recon).view(len(x), k)
        total += -(torch.logsumexp(log_w, dim=1) - math.log(k)).sum().item()
    return total / len(images)


@torch.inference_mode()
def active_units(model: DRAW, images: torch.Tensor, batch_size: int = 500, threshold: float = 0.01) -> torch.Tensor:
    """Which latents the model uses (Burda et al. 2016): Var over images of E_q[z_t,d | x] > threshold.
    Returns a bool (T, Z). Unused ones sit at the prior and change nothing when edited."""
    device = model.head.weight.device
    total = total_sq = 0.0
    for i in tqdm(range(0, len(images), batch_size), desc="active units", leave=False):
        mu = reconstruct(model, images[i : i + batch_size].to(device)).mu.double()  # (B, T, Z)
        total, total_sq = total + mu.sum(0), total_sq + (mu**2).sum(0)
    mean = total / len(images)
    return (total_sq / len(images) - mean**2 > threshold).cpu()


SPLITS = ("test", "train", "valid", "train+valid")
GREY_SPLITS = {"test": "test", "train+valid": "train"}  # the grey MNIST split holding the same digits


def load_split(root, split: str, resample_seed: int | None = None) -> torch.Tensor:
    """Binary images (n, 28, 28) of a binarized-MNIST split ('train+valid': 60,000 training images).
    With resample_seed, a fresh Bernoulli sample of the same digits' grey images instead of the
    standard binarization (the rows come in grey MNIST's order, not the .amat files')."""
    if resample_seed is not None:
        if split not in GREY_SPLITS:
            raise ValueError(f"resampling needs split {' or '.join(GREY_SPLITS)}: grey MNIST holds no other's digits")
        grey = torch.from_numpy(load_mnist(root, GREY_SPLITS[split])[0])
        return torch.bernoulli(grey, generator=torch.Generator().manual_seed(resample_seed))
    parts = split.split("+")
    return torch.from_numpy(np.concatenate([load_binarized_mnist(root, s) for s in parts]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--data-dir", help="MNIST directory (default: $DRAW_DATA_DIR)")
    p.add_argument("--split", choices=SPLITS, default="test", help="images to score (default: test)")
    p.add_argument(
        "--resample",
        action="store_true",
        help="score a fresh binarization (seeded by --seed) of the split's grey digits (test or train+valid)",
    )
    p.add_argument("--limit", type=int, default=0, help="a shuffled subset of N images only (0: all)")
    p.add_argument("--passes", type=int, default=1, help="average the bound over this many posterior samples")
    p.add_argument("--iw-samples", type=int, default=0, help="also estimate NLL with k importance samples")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true", help="write the results into the checkpoint's config.json")
    args = p.parse_args(argv)
    if args.passes < 1:
        raise SystemExit("error: --passes must be at least 1")
    standard_test = args.split == "test" and not args.resample
    if args.record and (args.limit or not standard_test):
        raise SystemExit("error: --record needs the full standard test set; drop --limit, --split and --resample")
    torch.set_flush_denormal(True)  # subnormal filter tails are slow and make no difference (see train.py)

    root = data_dir(args.data_dir)
    if root is None:
        raise SystemExit("error: no data directory: pass --data-dir or set $DRAW_DATA_DIR")
    try:
        model, metadata = checkpoint.load(args.checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
        images = load_split(root, args.split, args.seed if args.resample else None)
    except (checkpoint.CheckpointError, DataError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    if args.limit:
        # the rows are ordered by digit class (test) or come in blocks: take a shuffled subset
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))[: args.limit]]

    bound = nll_bound(model, images, args.batch_size, args.seed, args.passes)
    resampled = ", binarized afresh from grey MNIST" if args.resample else ""
    print(f"{args.checkpoint}: {len(images)} {args.split} images{resampled}")
    se = f" ± {bound['nll_se']:.2f} (Monte Carlo standard error, {args.passes} passes)" if args.passes > 1 else ""
    print(f"  NLL bound  {bound['nll']:.2f}{se} nats  (reconstruction {bound['recon']:.2f} + KL {bound['kl']:.2f})")
    results = {
        "test_nll_nats": round(bound["nll"], 2),
        "test_recon_nats": round(bound["recon"], 2),
        "test_kl_nats": round(bound["kl"], 2),
        "test_images": len(images),
        "test_bound_passes": args.passes,
    }
    if standard_test:  # a property of the model, measured on (and recorded with) the test set
        active = active_units(model, images, args.batch_size)
        steps = f"{int(active.any(1).sum())} of {len(active)} steps"
        print(f"  active units  {int(active.sum())} of {active.numel()} latents z_t,d, in {steps}")
        results["test_active_units"] = int(active.sum())
    if args.passes > 1:
        results["test_nll_se_nats"] = round(bound["nll_se"], 3)
    if args.iw_samples:
        iw = iw_nll(model, images, args.iw_samples, args.batch_size, args.seed)
        print(f"  IW NLL (k={args.iw_samples})  {iw:.2f} nats")
        results.update({"test_iw_nll_nats": round(iw, 2), "test_iw_samples": args.iw_samples})
    if args.record:
        metadata.pop("test_nll_se_nats", None)  # from an earlier run with --passes
        metadata.update(results, evaluated=datetime.date.today().isoformat())
        checkpoint.write_info(args.checkpoint, model.cfg, metadata)
        print(f"  recorded in {args.checkpoint}/{checkpoint.INFO}")


if __name__ == "__main__":
    main()
