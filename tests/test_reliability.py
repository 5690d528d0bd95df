"""Faults: killing a training process (SIGINT, SIGTERM, SIGKILL) and resuming it; many threads on one model.

The training runs here are real subprocesses of `python -m draw.train` on the tiny config."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import pytest
import torch
from tiny import TINY, TINY_FLAGS, binarized_mnist_dir

from draw import trace, train
from draw.attention import AttentionParams
from draw.config import DrawConfig
from draw.model import DRAW

STEPS_PER_EPOCH = 7  # 56 tiny images in batches of 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return binarized_mnist_dir(tmp_path_factory.mktemp("data"))


def flags(data, run, *extra) -> list[str]:
    common = ["--data-dir", data, "--run", run, "--batch-size", 8, "--val-size", 8, "--epochs", 10_000, "--threads", 1]
    return [str(f) for f in common + list(extra)] + TINY_FLAGS


def start_and_signal(data, run, sig, *extra) -> tuple[int, str]:
    """Start a long run, wait for its first epoch to end (so it is mid-training), send sig."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "draw.train"] + flags(data, run, *extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("{"):  # the first epoch's record
                break
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out


def saved_progress(run) -> dict:
    return json.loads(torch.load(run / train.STATE, weights_only=True)["progress"])


def assert_resumes_exactly(data, run, tmp_path, steps: int):
    """Resume run to `steps` and compare, bit for bit, with an uninterrupted run to `steps`."""
    train.train(train.parse_args(flags(data, run, "--max-steps", steps)))
    reference = tmp_path / "reference"
    train.train(train.parse_args(flags(data, reference, "--max-steps", steps)))
    a, b = (torch.load(r / train.STATE, weights_only=True) for r in (run, reference))
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    pa, pb = (json.loads(s["progress"]) for s in (a, b))
    assert {**pa, "seconds": 0} == {**pb, "seconds": 0}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_saves_at_the_current_step_and_resumes_exactly(data, tmp_path, sig):
    run = tmp_path / "run"
    code, out = start_and_signal(data, run, sig, "--save-every", 1000)  # only the interrupt and epoch ends save
    assert code == 130, out
    step = saved_progress(run)["step"]
    assert f"interrupted: saved {run / train.STATE} at step {step}" in out
    assert step >= STEPS_PER_EPOCH  # nothing since the first epoch's end was lost
    assert_resumes_exactly(data, run, tmp_path, step + 5)


def test_sigkill_loses_at_most_the_steps_since_the_last_save(data, tmp_path):
    run = tmp_path / "run"
    code, _ = start_and_signal(data, run, signal.SIGKILL, "--save-every", 3)
    assert code == -signal.SIGKILL
    progress = saved_progress(run)  # a whole file: saves are atomic
    assert progress["step"] >= 6 and (progress["step"] % 3 == 0 or progress["batch"] == 0)
    (run / f".{train.STATE}.abc123.tmp").write_bytes(b"half a save")  # as if killed while saving
    assert_resumes_exactly(data, run, tmp_path, progress["step"] + 5)
    assert sorted(p.name for p in run.iterdir()) == [train.STATE]


def _flatten(t: trace.Trace) -> dict:
    out = {}
    for f in fields(t):
        v = getattr(t, f.name)
        if isinstance(v, AttentionParams):
            out.update({f"{f.name}.{k}": a for k, a in v._asdict().items()})
        elif isinstance(v, torch.Tensor):
            out[f.name] = v
    return out


def test_eight_threads_on_one_model_match_one_thread():
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**TINY)).eval()
    images = (torch.rand(6, 28, 28) < 0.3).float()
    z = torch.linspace(-3, 3, 5)[:, None].expand(5, TINY["z_size"])

    def job(i: int) -> dict:
        if i % 3 == 0:
            return _flatten(trace.reconstruct(model, images, seed=i))
        if i % 3 == 1:
            return _flatten(trace.generate(model, 4, seed=i))
        base = trace.reconstruct(model, images[i % 6 : i % 6 + 1], seed=i)
        return _flatten(trace.redecode(model, base, step=1, z_step=z, closed_loop=True))

    jobs = list(range(24))
    alone = [job(i) for i in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(job, jobs))
    for a, b in zip(alone, together, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_first_signal_asks_to_stop_and_a_second_stops_at_once():
    with train.Stop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
