"""Checkpoints: round trip, nothing unpickled on load, and one clear CheckpointError naming the file."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file
from tiny import TINY

from draw import checkpoint
from draw.checkpoint import CheckpointError
from draw.config import DrawConfig
from draw.model import DRAW


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**TINY))
    checkpoint.save(model, tmp_path / "ckpt", {"steps": 3, "test_nll_nats": 99.5})
    return model, tmp_path / "ckpt"


def test_round_trip(saved):
    model, directory = saved
    loaded, metadata = checkpoint.load(directory)
    assert loaded.cfg == model.cfg and metadata == {"steps": 3, "test_nll_nats": 99.5}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert checkpoint.read_info(directory) == (model.cfg, metadata)
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]  # no temp files


def test_loading_never_unpickles(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    checkpoint.load(saved[1])


class Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('ran')",))


def test_a_pickle_posing_as_weights_is_refused_and_never_run(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (saved[1] / checkpoint.WEIGHTS).write_bytes(pickle.dumps(Payload()))
    torch.save({"x": Payload()}, tmp_path / "torch.pt")
    for payload in (pickle.dumps(Payload()), (tmp_path / "torch.pt").read_bytes()):
        (saved[1] / checkpoint.WEIGHTS).write_bytes(payload)
        with pytest.raises(CheckpointError, match="unreadable weights"):
            checkpoint.load(saved[1])
    assert not (tmp_path / "PWNED").exists()


def _damage(directory, how):
    weights, info = directory / checkpoint.WEIGHTS, directory / checkpoint.INFO
    if how == "no-weights":
        weights.unlink()
        return weights, "missing"
    if how == "no-config":
        info.unlink()
        return info, "missing"
    if how == "no-directory":
        return directory.parent / "nowhere" / checkpoint.INFO, "missing"
    if how == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:-100])
        return weights, "unreadable weights"
    if how == "empty-weights":
        weights.write_bytes(b"")
        return weights, "unreadable weights"
    if how == "garbage-weights":
        weights.write_bytes(b"\xff" * 64)
        return weights, "unreadable weights"
    if how == "truncated-config":
        info.write_text(info.read_text()[:20])
        return info, "not a valid checkpoint config"
    if how == "binary-config":
        info.write_bytes(b"\xff\xfe\x00")
        return info, "not a valid checkpoint config"
    if how == "config-not-object":
        info.write_text("[1, 2]")
        return info, "not a valid checkpoint config"
    if how == "unknown-config-key":
        data = json.loads(info.read_text())
        data["config"]["layers"] = 3
        info.write_text(json.dumps(data))
        return info, "unknown DrawConfig keys"
    if how == "invalid-config-value":
        data = json.loads(info.read_text())
        data["config"]["T"] = "many"
        info.write_text(json.dumps(data))
        return info, "not a valid checkpoint config"
    if how == "config-vs-weights":
        data = json.loads(info.read_text())
        data["config"]["z_size"] = 5
        info.write_text(json.dumps(data))
        return weights, "do not match"
    if how == "missing-tensor":
        model = DRAW(DrawConfig(**TINY))
        save_file({k: v for k, v in model.state_dict().items() if k != "head.bias"}, weights)
        return weights, "head.bias: expected"
    if how == "nan-weights":
        state = {k: v.clone() for k, v in DRAW(DrawConfig(**TINY)).state_dict().items()}
        state["head.weight"][0, 0] = float("nan")
        save_file(state, weights)
        return weights, "NaN or inf"
    raise ValueError(how)


DAMAGE = [
    "no-weights",
    "no-config",
    "no-directory",
    "truncated-weights",
    "empty-weights",
    "garbage-weights",
    "truncated-config",
    "binary-config",
    "config-not-object",
    "unknown-config-key",
    "invalid-config-value",
    "config-vs-weights",
    "missing-tensor",
    "nan-weights",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_checkpoint_gives_one_clear_error(saved, how):
    path, message = _damage(saved[1], how)
    with pytest.raises(CheckpointError, match=message) as e:
        checkpoint.load(path.parent)
    assert str(e.value).startswith(str(path))


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
