"""Train DRAW on binarized MNIST.

    python -m draw.train --data-dir ../shared/data --run runs/attention --export checkpoints/mnist_attention_T64

Resumable: the run directory holds `state.pt` (weights, optimizer, RNG, position in the epoch),
written atomically every --save-every steps and at each epoch's end. Rerunning the same
command continues exactly where it stopped: the batch order, the binarization and the
posterior noise of every step are functions of (--seed, epoch, step) alone. Ctrl-C (or
SIGTERM) stops at the end of the current step and saves; a second Ctrl-C stops at once,
keeping the last save. The model is exported to --export as a safetensors checkpoint at
each epoch's end (into a new directory each epoch if --export names {epoch}, for draw.average).

--init-from CHECKPOINT starts a new run directory from an exported checkpoint's weights, for
when state.pt is gone (another machine, a fresh clone). With the checkpoint's own config and seed
it continues that run: its epoch count, step and history go on (--epochs counts them), only Adam's
moment estimates start afresh. With the same batch size, --lr and --lr-decay its learning-rate
schedule goes on too; with others (a GPU takes larger batches) a new schedule starts from --lr,
ramped up over its first --warmup steps while Adam's fresh moment estimates settle.
With another beta it fine-tunes from epoch 0.

On one CUDA GPU the whole step (forward, backward, clipping, Adam) is captured once as a CUDA
graph and replayed (--cuda-graph false for plain eager steps); it computes the same numbers.

Runs unchanged under `torchrun --standalone --nproc_per_node K -m draw.train --run-dir ...`
(DistributedDataParallel, gloo on CPU, nccl on CUDA; spell --run as --run-dir there, since
torchrun's --run-path makes --run ambiguous): each rank takes every K-th image of every batch,
and only rank 0 writes the state, the exports and the progress bar.
"""

import argparse
import copy
import dataclasses
import datetime
import json
import math
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from draw import checkpoint
from draw.config import DrawConfig
from draw.data import DataError, data_dir, load_binarized_mnist, load_mnist
from draw.evaluate import nll_bound
from draw.model import DRAW, objective

STATE = "state.pt"
# Arguments that fix what step k of a run means; resuming with others would silently change it.
RUN_ARGS = ("batch_size", "seed", "train_split", "binarize")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="MNIST directory (default: $DRAW_DATA_DIR)")
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        help="directory for the resumable training state (--run-dir under torchrun, where --run is ambiguous)",
    )
    p.add_argument(
        "--export",
        type=export_template,
        help="checkpoint directory written at each epoch's end; {epoch} in it keeps one per epoch"
        " (runs/attention/epochs/{epoch}, for draw.average)",
    )
    p.add_argument("--init-from", help="exported checkpoint whose weights start a new run (see above)")
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
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="steps over which the learning rate ramps up linearly at the start of each schedule"
        " (a warm restart's Adam starts with no moment estimates; its first full-size steps undo training)",
    )
    p.add_argument("--clip", type=float, default=10.0, help="gradient-norm clip")
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="also keep an exponential moving average of the weights, updated after every step with this"
        " decay (e.g. 0.999; 0: off); validation and the exports use the average",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=200, help="steps between resumable saves")
    p.add_argument("--val-size", type=int, default=2000, help="validation images (0 to skip)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="on a CPU, compile the model's step with torch.compile (~1.3x a step after ~30 s; needs a C++ compiler)",
    )
    p.add_argument(
        "--cuda-graph",
        type=parse_bool,
        default=True,
        metavar="BOOL",
        help="on one CUDA GPU, replay the step as a CUDA graph (ignored on CPU and under torchrun)",
    )
    defaults = DrawConfig()
    for f in dataclasses.fields(DrawConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, type=parse_bool, default=f.default, metavar="BOOL")
        else:
            p.add_argument(flag, type=type(getattr(defaults, f.name)), default=f.default)
    return p.parse_args(argv)


def export_template(s: str) -> str:
    """--export: a directory, in which {epoch} stands for the epoch count."""
    try:
        s.format(epoch=0)
    except (KeyError, IndexError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{s!r}: only {{epoch}} may stand in braces ({e})") from e
    return s


def export_directory(template: str, epoch: int) -> Path:
    return Path(template.format(epoch=epoch))


def parse_bool(s: str) -> bool:
    return s.lower() in ("1", "true", "yes")


def config_from_args(args: argparse.Namespace) -> DrawConfig:
    return DrawConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DrawConfig)})


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


def step_noise(seed: int, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The eps of z = mu + sigma * eps for a whole batch at `step`, (B, T, Z): a function of
    (seed, step) alone, so a resumed run, on CPU or CUDA, on one process or many, draws the same."""
    key = np.random.SeedSequence([seed, step, 1]).generate_state(1, np.uint64)[0]
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(key)))


def make_batch(train_x: torch.Tensor, order: torch.Tensor, b: int, step: int, args, cfg: DrawConfig):
    """Batch b of the epoch whose permutation is `order`, as step `step` of the run sees it:
    images (B, H, W), binarized afresh if --binarize dynamic, and the posterior noise (B, T, Z)."""
    x = train_x[order[b * args.batch_size : (b + 1) * args.batch_size]]
    if args.binarize == "dynamic":
        x = binarize_batch(x, args.seed, step)
    return x, step_noise(args.seed, step, (len(x), cfg.T, cfg.z_size))


def prefetched(fn, calls):
    """fn(*a) for each a in calls, each computed in a thread while the previous one is used
    (the noise of a 1024-image batch is ~30 ms of CPU, as long as a graphed step on a GPU)."""
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for a in calls:
            ahead = pool.submit(fn, *a)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()


def learning_rate(args, progress: dict, n_batches: int) -> float:
    """--lr decayed by --lr-decay per epoch since this schedule began (at step lr_from_step),
    ramped up linearly over the schedule's first --warmup steps."""
    steps = progress["step"] - progress["lr_from_step"]
    ramp = min(1.0, (steps + 1) / args.warmup) if args.warmup else 1.0
    return args.lr * ramp * args.lr_decay ** (steps / n_batches)


def schedule_line(args, progress: dict, n_batches: int) -> str:
    """What the learning rate is at the run's next step and which schedule it follows."""
    schedule = f"--lr {args.lr:g} x {args.lr_decay:g} per epoch"
    since = progress["lr_from_step"]
    if since == progress["step"]:
        return f"learning rate: a new schedule, {schedule}, {args.warmup} warm-up steps"
    lr = learning_rate(args, progress, n_batches)
    return f"learning rate: {lr:.2g}, going on with the schedule of {schedule} begun at step {since}"


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)  # in place: a captured graph reads this tensor
        else:
            group["lr"] = lr


def set_capturable(optimizer, capturable: bool) -> None:
    """Put Adam in the form CUDA-graph capture needs (learning rate and step counts as tensors on
    the GPU) or in the plain eager form (floats, step counts on the CPU); state.pt may hold either."""
    for group in optimizer.param_groups:
        device = group["params"][0].device if capturable else torch.device("cpu")
        group["capturable"] = capturable
        group["lr"] = torch.tensor(float(group["lr"]), device=device) if capturable else float(group["lr"])
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state:
                state["step"] = state["step"].to(device, torch.float32)


def batch_loss(net, x: torch.Tensor, noise: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`objective` and the mean summed KL, both in nats per image, through `net` (the model or its
    DistributedDataParallel wrapper, whose forward must be the one called). x (B, H, W), noise (B, T, Z)."""
    out = net(x, noise)
    return objective(out, beta), out.kl.sum(1).mean()


class GraphedStep:
    """One training step (forward, backward, clipping, Adam) for a fixed batch shape, captured as
    a CUDA graph and replayed. DRAW's 64 sequential steps of small matrices launch ~20k kernels
    per training step; launched one by one from Python they, not the GPU, set the pace.

    Replays read the batch from fixed buffers and update the weights and Adam's state in place,
    so validation and export always see the current model. Adam must be set_capturable."""

    def __init__(self, model: DRAW, optimizer, clip: float, batch: int):
        c, device = model.cfg, model.head.weight.device
        self.x = torch.rand(batch, c.height, c.width, device=device).round()
        self.noise = torch.randn(batch, c.T, c.z_size, device=device)
        # Capture needs warm-up steps first (they create Adam's state and the libraries'
        # workspaces); those steps move the weights and moments, which are put back in place.
        before = [*model.parameters(), *(t for s in optimizer.state.values() for t in s.values())]
        saved = [t.detach().clone() for t in before]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                self._step(model, optimizer, clip)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            kept = {id(t) for t in before}
            for s in optimizer.state.values():  # state the warm-up created: Adam's initial zeros
                for t in s.values():
                    if id(t) not in kept:
                        t.zero_()
            for t, v in zip(before, saved, strict=True):
                t.copy_(v)
        optimizer.zero_grad(set_to_none=True)  # backward inside the graph then owns the gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.stats = self._step(model, optimizer, clip)

    def _step(self, model: DRAW, optimizer, clip: float) -> torch.Tensor:
        loss, kl = batch_loss(model, self.x, self.noise, model.cfg.beta)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return torch.stack([loss.detach(), kl.detach(), norm])

    def __call__(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[float, float, float]:
        """One step on x (B, H, W) with noise (B, T, Z): (loss, mean KL, gradient norm before clipping)."""
        self.x.copy_(x)
        self.noise.copy_(noise)
        self.graph.replay()
        return tuple(self.stats.tolist())


def check_writable(directory: Path) -> None:
    """Fail before training, not after the first epoch, if directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe"):
            pass
    except OSError as e:
        raise SystemExit(f"error: cannot write to {directory}: {e}") from e


def update_average(averaged: DRAW, model: DRAW, decay: float) -> None:
    """--ema: averaged <- decay * averaged + (1 - decay) * model, parameter by parameter."""
    with torch.no_grad():
        for a, p in zip(averaged.parameters(), model.parameters(), strict=True):
            a.lerp_(p, 1 - decay)


def epoch_mean_loss(progress: dict) -> float | None:
    """The mean training loss (nats per image) over the epoch's batches, taken out of progress so
    that the next epoch starts its own. (Earlier versions recorded the epoch's last batch's loss, as
    the committed checkpoints' histories do; an epoch resumed from a state they wrote averages the
    batches after the resume.)"""
    total = progress.pop("epoch_loss", None)
    return total["sum"] / total["batches"] if total else progress.get("loss")


def save_state(run: Path, model, optimizer, progress: dict, averaged: DRAW | None) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "config": json.dumps(model.cfg.to_dict()),
        "progress": json.dumps(progress),
    }
    if averaged is not None:
        state["ema"] = averaged.state_dict()
    checkpoint.atomic_write(run / STATE, lambda p: torch.save(state, p))


def load_state(run: Path, device: torch.device) -> dict:
    """state.pt, read with weights_only=True (tensors and plain containers; no code runs)."""
    path = run / STATE
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        state["config"] = DrawConfig.from_dict(json.loads(state["config"]))
        state["progress"] = json.loads(state["progress"])
        return state
    except Exception as e:  # torch.load raises many kinds on a damaged file
        raise SystemExit(f"error: {path} is unreadable ({type(e).__name__}: {e}); move it away to start over") from e


class Stop:
    """Ctrl-C or SIGTERM sets `requested`; the loop stops at the next step boundary, where the
    saved state is consistent. A second signal raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class Interrupted(Exception):
    pass


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) joins the process group."""
    cuda = torch.cuda.is_available()
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def train(args: argparse.Namespace) -> dict:
    """Run (or resume) training; returns the final progress record."""
    run = Path(args.run)
    check_writable(run)
    if args.export:  # with {epoch}, the directory that will hold the per-epoch exports
        first = export_directory(args.export, 0)
        check_writable(first.parent if "{epoch}" in args.export else first)
    for stale in run.glob(f".{STATE}.*.tmp"):  # left by a run killed while saving
        stale.unlink(missing_ok=True)
    root = data_dir(args.data_dir)
    if root is None:
        raise SystemExit("error: no data directory: pass --data-dir or set $DRAW_DATA_DIR")
    if args.threads:
        torch.set_num_threads(args.threads)
    # The far tails of the Gaussian filters are subnormal floats, and products with them run ~100x
    # slower on a CPU (a fifth of a training step); as zeros they change nothing we can measure.
    torch.set_flush_denormal(True)
    rank, world, device = setup_distributed()
    if world == 1:
        return _train(args, run, root, rank, world, device)
    try:
        progress = _train(args, run, root, rank, world, device)
    except SystemExit as e:
        if e.code == 130:  # interrupted on every rank at once
            dist.barrier()
        raise
    else:
        dist.barrier()  # rank 0 may still be saving: a rank leaving the group early aborts in gloo
        return progress
    finally:
        dist.destroy_process_group()


def _train(args, run: Path, root: Path, rank: int, world: int, device: torch.device) -> dict:
    if not 0 <= args.ema < 1:
        raise SystemExit(f"error: --ema {args.ema}: the decay must be in [0, 1)")
    if args.warmup < 0:
        raise SystemExit(f"error: --warmup {args.warmup}: the number of steps must be >= 0")
    if args.batch_size % world:
        raise SystemExit(f"error: --batch-size {args.batch_size} does not split over {world} processes")
    torch.manual_seed(args.seed)
    cfg = config_from_args(args)
    model = DRAW(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    run_args = {k: getattr(args, k) for k in RUN_ARGS}
    progress = {"epoch": 0, "batch": 0, "step": 0, "lr_from_step": 0, "seconds": 0.0, "history": [], "args": run_args}
    saved_average = None
    if (run / STATE).exists():
        state = load_state(run, device)
        if state["config"] != cfg:
            raise SystemExit(f"error: {run} was trained with {state['config']}, not {cfg}; use another --run")
        saved_args = state["progress"].get("args", run_args)  # states written before issue 6 lack it
        if saved_args != run_args:
            raise SystemExit(f"error: {run} was trained with {saved_args}, not {run_args}; use another --run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        saved_average = state.get("ema")
        progress = {"lr_from_step": 0} | state["progress"] | {"args": run_args}
        if rank == 0:
            print(f"resuming {run} at epoch {progress['epoch']}, step {progress['step']}")
    elif args.init_from:
        progress = init_from(model, args, cfg, device, progress)
        if rank == 0:
            print(f"starting {run} from {args.init_from} at epoch {progress['epoch']}, step {progress['step']}")
    # --ema: the average starts from the weights the run starts from, unless the state kept one
    averaged = copy.deepcopy(model).requires_grad_(False) if args.ema else None
    if averaged is not None and saved_average is not None:
        averaged.load_state_dict(saved_average)
    shown = model if averaged is None else averaged  # the weights validated and exported
    if args.compile:
        if device.type != "cpu":
            raise SystemExit("error: --compile is for CPU training; on a GPU the step is replayed as a CUDA graph")
        model.compile_step()
        if rank == 0:
            print("--compile: the first step and the first validation each compile first (~30 s on a CPU)")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    use_graph = args.cuda_graph and device.type == "cuda" and world == 1
    set_capturable(optimizer, use_graph)
    graphed_step = GraphedStep(model, optimizer, args.clip, args.batch_size) if use_graph else None

    try:
        train_x, val_x = load_training_data(root, args.train_split, args.binarize, args.val_size)
    except DataError as e:
        raise SystemExit(f"error: {e}") from e
    n_batches = len(train_x) // args.batch_size
    if rank == 0:
        print(schedule_line(args, progress, n_batches))
    started = time.time() - progress["seconds"]

    def save():
        progress["seconds"] = time.time() - started
        if rank == 0:
            save_state(run, model, optimizer, progress, averaged)

    model.train()
    try:
        with Stop() as stop:
            while progress["epoch"] < args.epochs:
                epoch = progress["epoch"]
                order = batch_order(len(train_x), args.seed, epoch)
                bar = tqdm(
                    range(progress["batch"], n_batches),
                    desc=f"epoch {epoch + 1}/{args.epochs}",
                    initial=progress["batch"],
                    total=n_batches,
                    dynamic_ncols=True,
                    disable=rank != 0,
                )
                batches = [(train_x, order, b, progress["step"] + i, args, cfg) for i, b in enumerate(bar.iterable)]
                for b, (x, noise) in zip(bar, prefetched(make_batch, batches), strict=True):
                    if args.max_steps and progress["step"] >= args.max_steps:
                        bar.close()
                        save()
                        return progress
                    set_learning_rate(optimizer, learning_rate(args, progress, n_batches))
                    if graphed_step:
                        if stop.requested:
                            raise Interrupted
                        loss, kl, norm = graphed_step(x, noise)
                        check_finite(progress["step"], loss=loss, gradient_norm=norm)
                    else:
                        loss, kl = train_step(net, optimizer, args, x, noise, progress["step"], stop, rank, world)
                    if averaged is not None:
                        update_average(averaged, model, args.ema)
                    progress.update(step=progress["step"] + 1, batch=b + 1, loss=loss)
                    total = progress.get("epoch_loss", {"sum": 0.0, "batches": 0})
                    progress["epoch_loss"] = {"sum": total["sum"] + loss, "batches": total["batches"] + 1}
                    bar.set_postfix(loss=f"{loss:.2f}", kl=f"{kl:.2f}")
                    if progress["step"] % args.save_every == 0:
                        save()
                bar.close()
                progress["epoch"] += 1
                progress["batch"] = 0
                record = {
                    "epoch": progress["epoch"],
                    "step": progress["step"],
                    "batch_size": args.batch_size,
                    "binarize": args.binarize,
                    "train_loss": epoch_mean_loss(progress),
                }
                if rank == 0:
                    if len(val_x):
                        record.update({f"val_{k}": v for k, v in nll_bound(shown, val_x, progress=False).items()})
                    tqdm.write(json.dumps(record))
                progress["history"].append(record)
                save()
                if args.export and rank == 0:
                    export(shown, args, progress)
    except Interrupted:
        save()
        if rank == 0:
            print(f"\ninterrupted: saved {run / STATE} at step {progress['step']}; rerun the same command to resume")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        raise SystemExit(f"\nstopped at once: {run / STATE} keeps the last save") from None
    except FloatingPointError as e:
        raise SystemExit(f"error: {e}; stopped, the last good state is in {run / STATE}") from e
    return progress


def init_from(model: DRAW, args, cfg: DrawConfig, device, progress: dict) -> dict:
    """Load an exported checkpoint's weights into model; the progress the new run starts from."""
    try:
        source, metadata = checkpoint.load(args.init_from, device)
    except checkpoint.CheckpointError as e:
        raise SystemExit(f"error: --init-from: {e}") from e
    if dataclasses.replace(source.cfg, beta=cfg.beta) != cfg:
        raise SystemExit(f"error: --init-from {args.init_from} has config {source.cfg}, not {cfg}")
    model.load_state_dict(source.state_dict())
    source_at = f"epoch {metadata.get('epochs', '?')}, step {metadata.get('steps', '?')}"
    progress = progress | {"init_from": f"{args.init_from} ({source_at})"}
    if source.cfg == cfg and metadata.get("seed") == args.seed and "epochs" in metadata:
        seconds = float(metadata.get("train_seconds", 0))
        progress.update(epoch=metadata["epochs"], step=metadata["steps"], seconds=seconds)
        progress["history"] = source_history(metadata)
        same_schedule = all(metadata.get(k) == getattr(args, k) for k in ("batch_size", "lr", "lr_decay"))
        progress["lr_from_step"] = metadata.get("lr_from_step", 0) if same_schedule else metadata["steps"]
    return progress


def source_history(metadata: dict) -> list[dict]:
    """An export's history records, each saying the batch size and binarization it was trained
    with; records written before records carried them get the export's own settings, the others
    stay as they are (so a continued checkpoint's config.json keeps its keys' order)."""
    trained_on = metadata.get("trained_on", "")
    binarize = metadata.get("binarize", "dynamic" if "dynamically" in trained_on else "static")
    settings = {"batch_size": metadata.get("batch_size"), "binarize": binarize}
    return [r if settings.keys() <= r.keys() else settings | r for r in metadata.get("history", [])]


def check_finite(step: int, **values: float) -> None:
    """FloatingPointError naming the first of values (loss=..., gradient_norm=...) that is not finite."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"{name.replace('_', ' ')} is {value} at step {step}")


def train_step(net, optimizer, args, x, noise, step: int, stop: Stop, rank: int, world: int):
    """One Adam step on this rank's shard of batch x (B, H, W) with noise (B, T, Z); returns the
    batch's mean loss and KL.

    Raises Interrupted before changing anything if any rank was asked to stop, and
    FloatingPointError if the loss or the gradient is not finite."""
    cfg = net.module.cfg if world > 1 else net.cfg
    device = next(net.parameters()).device
    loss, kl = batch_loss(net, x[rank::world].to(device), noise[rank::world].to(device), cfg.beta)
    stats = torch.stack([loss.detach(), kl.detach(), torch.tensor(float(stop.requested), device=device)])
    if world > 1:
        dist.all_reduce(stats)  # the shards are equal, so the mean of their means is the batch mean
        stats[:2] /= world
    loss_value, kl_value, stops = stats.tolist()
    if stops:
        raise Interrupted
    check_finite(step, loss=loss_value)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
    check_finite(step, gradient_norm=norm.item())
    optimizer.step()
    return loss_value, kl_value


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
        "binarize": args.binarize,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "lr_from_step": progress["lr_from_step"],
        "warmup": args.warmup,
        "ema": args.ema,
        "seed": args.seed,
        "train_seconds": round(progress["seconds"]),
        "date": datetime.date.today().isoformat(),
        "history": progress["history"],
    }
    if "init_from" in progress:
        metadata["init_from"] = progress["init_from"]
    checkpoint.save(model, export_directory(args.export, progress["epoch"]), metadata)


def main(argv=None) -> None:
    try:
        train(parse_args(argv))
    except torch._dynamo.exc.BackendCompilerFailed as e:  # --compile, and no working C++ compiler
        raise SystemExit(f"error: --compile: {e}") from e


if __name__ == "__main__":
    main()
