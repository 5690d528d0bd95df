"""Pretrained checkpoints: a directory holding `model.safetensors` (weights only, nothing that runs
on load) and `config.json` ({"config": DrawConfig fields, "metadata": {...}}), e.g. the measured
test bound under metadata["test_nll_nats"]."""

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from draw.config import DrawConfig
from draw.model import DRAW

WEIGHTS = "model.safetensors"
INFO = "config.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or its weights do not fit its config."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path onto path, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_info(directory: str | os.PathLike, cfg: DrawConfig, metadata: dict) -> None:
    text = json.dumps({"config": cfg.to_dict(), "metadata": metadata}, indent=2) + "\n"
    atomic_write(Path(directory) / INFO, lambda p: Path(p).write_text(text))


def save(model: DRAW, directory: str | os.PathLike, metadata: dict) -> None:
    """Write the weights and config.json into directory (created if needed), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS, lambda p: save_file(weights, p))
    write_info(directory, model.cfg, metadata)


def read_info(directory: str | os.PathLike) -> tuple[DrawConfig, dict]:
    """The config and metadata of a checkpoint, without touching its weights."""
    path = Path(directory) / INFO
    try:
        info = json.loads(path.read_text())
        return DrawConfig.from_dict(info["config"]), dict(info.get("metadata", {}))
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: missing") from e
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a valid checkpoint config ({type(e).__name__}: {e})") from e


def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[DRAW, dict]:
    """Build the model its config describes and load its weights; CheckpointError if they disagree."""
    cfg, metadata = read_info(directory)
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        weights = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable weights ({e})") from e
    model = DRAW(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        diff = sorted(
            f"{k}: expected {expected.get(k, 'nothing')}, found {found.get(k, 'nothing')}"
            for k in expected.keys() | found.keys()
            if expected.get(k) != found.get(k)
        )
        raise CheckpointError(f"{path}: weights do not match {directory}/{INFO}: " + "; ".join(diff))
    if not all(torch.isfinite(v).all() for v in weights.values()):
        raise CheckpointError(f"{path}: weights contain NaN or inf")
    model.load_state_dict(weights)
    return model.to(device).eval(), metadata
