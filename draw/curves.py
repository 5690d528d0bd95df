"""Learning curves of exported checkpoints, from the history in their config.json, as a PNG.

    python -m draw.curves checkpoints/mnist_attention_T64 checkpoints/mnist_noattention_T64 -o docs/learning_curves.png

One line per checkpoint: the bound (nats) on the first 2000 'valid' images after each epoch (part
of the training data when training on train+valid, so it tracks the fit), the measured test bound
as a star at the last epoch, the paper's test figures as dashed reference lines, and a dotted
line where the batch size (a run continued on a GPU) or the binarization changed.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from draw import checkpoint  # noqa: E402

# Gregor et al. 2015, table 2: test NLL bound on binarized MNIST, T = 64.
PAPER_NLL = {True: 80.97, False: 87.40}


def training_change(before: dict, after: dict) -> str:
    """What changed between two history records' training settings ("" if nothing known did):
    the batch size (a run continued on a GPU) or the binarization (static -> dynamic)."""
    changes = []
    if None not in (before.get("batch_size"), after.get("batch_size")) and before["batch_size"] != after["batch_size"]:
        changes.append(f"batch {after['batch_size']}")
    if None not in (before.get("binarize"), after.get("binarize")) and before["binarize"] != after["binarize"]:
        changes.append(f"{after['binarize']} binarization")
    return ", ".join(changes)


def figure(checkpoints: list[str]) -> plt.Figure:
    """The learning-curve figure of the checkpoint directories (the caller closes it)."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    change_labels = []
    for i, directory in enumerate(checkpoints):
        cfg, meta = checkpoint.read_info(directory)
        history = [r for r in meta.get("history", []) if "val_nll" in r]
        if not history:
            raise SystemExit(f"error: {directory} has no validation history to plot")
        color = f"C{i}"
        label = f"{Path(directory).name} (beta={cfg.beta:g})"
        ax.plot([r["epoch"] for r in history], [r["val_nll"] for r in history], "-o", ms=3, color=color, label=label)
        changes = [(b["epoch"], c) for b, a in zip(history, history[1:], strict=False) if (c := training_change(b, a))]
        for k, (epoch, change) in enumerate(changes):
            ax.axvline(epoch, ls=":", lw=0.8, color=color)
            # a row of labels per checkpoint, and successive labels take turns over three such bands, so
            # neither the next two changes nor other checkpoints' labels overprint one
            row = -12 - 10 * (i + len(checkpoints) * (k % 3))
            label = ax.annotate(f"{change} from here", (epoch, 1), xycoords=("data", "axes fraction"),
                                textcoords="offset points", xytext=(3, row), fontsize=7, color=color)  # fmt: skip
            change_labels.append(label)
        if "test_nll_nats" in meta:
            ax.plot(history[-1]["epoch"], meta["test_nll_nats"], "*", ms=12, color=color)
            ax.annotate(f"test {meta['test_nll_nats']:.2f}", (history[-1]["epoch"], meta["test_nll_nats"]),
                        textcoords="offset points", xytext=(6, 6), color=color, fontsize=8)  # fmt: skip
    for attention, nll in PAPER_NLL.items():
        ax.axhline(nll, ls="--", lw=0.8, color="grey")
        # below its line, at mid-axis: the attention curve runs just above 80.97 there, nothing just below 87.4
        ax.annotate(f"paper, {'attention' if attention else 'no attention'}: {nll}", (0.5, nll),
                    xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(0, -3),
                    fontsize=8, color="grey", ha="center", va="top")  # fmt: skip
    ax.set(xlabel="epoch", ylabel="NLL bound, nats", title="DRAW, binarized MNIST: 2000 valid images, ★ full test set")
    ax.set_ylim(top=min(ax.get_ylim()[1], 130))
    x_lo, x_hi = ax.get_xlim()
    for label in change_labels:
        if label.xy[0] > x_lo + 0.75 * (x_hi - x_lo):  # near the right edge: left of its line, not past the axes
            label.set_horizontalalignment("right")
            label.xyann = (-3, label.xyann[1])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot(checkpoints: list[str], out: Path) -> None:
    """Write the figure to out (PNG)."""
    fig = figure(checkpoints)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoint directories")
    p.add_argument("-o", "--out", type=Path, default=Path("docs/learning_curves.png"))
    args = p.parse_args(argv)
    try:
        plot(args.checkpoints, args.out)
    except checkpoint.CheckpointError as e:
        raise SystemExit(f"error: {e}") from e
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
