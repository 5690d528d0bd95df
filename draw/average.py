"""Average the weights of several exports of one training run (stochastic weight averaging,
Izmailov et al. 2018): the per-epoch exports of a low-learning-rate tail scatter around one
minimum, and their mean can lie nearer its centre than any one of them.

    python -m draw.train ... --export runs/attention/epochs/{epoch}
    python -m draw.average runs/attention/epochs/49? --export checkpoints/mnist_attention_T64

The result is an ordinary checkpoint with the latest input's config and metadata (its epochs,
steps and history, so --init-from continues after it) and metadata["averaged"], the epochs and
steps of every input. Figures that evaluate recorded for an input are dropped: they describe
other weights.
"""

import argparse

import torch

from draw import checkpoint
from draw.model import DRAW


def average(directories: list[str]) -> tuple[DRAW, dict]:
    """The uniform mean of the checkpoints' weights (accumulated in float64), in a model carrying
    the latest checkpoint's config, with its metadata; CheckpointError unless every checkpoint
    is a distinct export of one run: one config, each history a prefix of the latest one's."""
    if len(directories) < 2:
        raise checkpoint.CheckpointError("averaging needs at least two checkpoints")
    loaded = sorted(((*checkpoint.load(d), d) for d in directories), key=lambda c: c[1].get("steps", -1))
    model, latest, latest_dir = loaded[-1]
    steps = [metadata.get("steps") for _, metadata, _ in loaded]
    if None in steps or len(set(steps)) < len(steps):
        raise checkpoint.CheckpointError("each checkpoint must be a distinct training export (metadata 'steps')")
    history = latest.get("history", [])
    for other, metadata, directory in loaded[:-1]:
        if other.cfg != model.cfg:
            raise checkpoint.CheckpointError(f"{directory}: its config differs from {latest_dir}'s")
        if history[: len(metadata.get("history", []))] != metadata.get("history", []):
            raise checkpoint.CheckpointError(f"{directory}: not an earlier export of {latest_dir}'s run")
    states = [m.state_dict() for m, _, _ in loaded]  # the last is model's own: each name is read before written
    with torch.no_grad():
        for name, tensor in states[-1].items():
            tensor.copy_(torch.stack([state[name].double() for state in states]).mean(0))
    metadata = {k: v for k, v in latest.items() if not k.startswith("test_") and k != "evaluated"}
    metadata["averaged"] = [{"epochs": m.get("epochs"), "steps": m["steps"]} for _, m, _ in loaded]
    return model, metadata


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoint directories of one run")
    p.add_argument("--export", required=True, help="directory for the averaged checkpoint")
    args = p.parse_args(argv)
    try:
        model, metadata = average(args.checkpoints)
        checkpoint.save(model, args.export, metadata)
    except (checkpoint.CheckpointError, OSError) as e:
        raise SystemExit(f"error: {e}") from e
    epochs = [a["epochs"] for a in metadata["averaged"]]
    print(f"averaged {len(epochs)} checkpoints (epochs {', '.join(map(str, epochs))}) into {args.export}")


if __name__ == "__main__":
    main()
