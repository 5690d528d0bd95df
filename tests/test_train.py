"""The train and evaluate CLIs on a tiny DRAW and tiny generated data (a few milliseconds a step)."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from tiny import TINY, TINY_FLAGS, binarized_mnist_dir, needs_cxx, run_train

from draw import checkpoint, evaluate, train
from draw.config import DrawConfig
from draw.data import load_mnist
from draw.model import DRAW

# 40 train + 16 valid images in batches of 8: 7 steps an epoch.
STEPS_PER_EPOCH = 7


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return binarized_mnist_dir(tmp_path_factory.mktemp("data"))


def read_state(run) -> dict:
    state = torch.load(run / train.STATE, weights_only=True)
    state["progress"] = json.loads(state["progress"])
    del state["progress"]["seconds"]
    return state


def assert_same_run(a, b, first_epoch_loss=True):
    """Two state.pt files hold the same weights, optimizer moments and progress, bit for bit
    (but for the first epoch's mean training loss when first_epoch_loss is False)."""
    sa, sb = read_state(a), read_state(b)
    if not first_epoch_loss:
        for s in (sa, sb):
            s["progress"]["history"][0].pop("train_loss")
    assert sa["progress"] == sb["progress"]
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    for p, s in sa["optimizer"]["state"].items():
        for k, v in s.items():
            assert torch.equal(v, sb["optimizer"]["state"][p][k]), (p, k)
    assert sa.keys() == sb.keys()
    for k, v in sa.get("ema", {}).items():
        assert torch.equal(v, sb["ema"][k]), k


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of 12 steps (over an epoch's end, with its validation)."""
    run = tmp_path_factory.mktemp("reference")
    progress = run_train(data, run, "--max-steps", 12)
    assert progress["step"] == 12 and len(progress["history"]) == 1
    return run


def test_resume_continues_exactly(data, reference, tmp_path):
    run_train(data, tmp_path, "--max-steps", 5)
    assert read_state(tmp_path)["progress"]["step"] == 5
    run_train(data, tmp_path, "--max-steps", 12)
    assert_same_run(tmp_path, reference)


def test_the_history_records_each_epochs_mean_training_loss(data, tmp_path, monkeypatch):
    losses = []
    step = train.train_step

    def recorded(*args):
        loss, kl = step(*args)
        losses.append(loss)
        return loss, kl

    monkeypatch.setattr(train, "train_step", recorded)
    progress = run_train(data, tmp_path, "--max-steps", 2 * STEPS_PER_EPOCH)
    per_epoch = [losses[:STEPS_PER_EPOCH], losses[STEPS_PER_EPOCH:]]
    assert [r["train_loss"] for r in progress["history"]] == pytest.approx([sum(e) / len(e) for e in per_epoch])


def test_resume_after_a_crash_between_the_last_batch_and_the_epoch_end(data, reference, tmp_path, monkeypatch):
    """Saved at the epoch's last batch, killed during validation: resuming must finish that epoch."""

    def crash(*args, **kwargs):
        raise RuntimeError("killed during validation")

    with monkeypatch.context() as m:
        m.setattr(train, "nll_bound", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run_train(data, tmp_path, "--save-every", STEPS_PER_EPOCH)
    p = read_state(tmp_path)["progress"]
    assert (p["epoch"], p["batch"], p["step"]) == (0, STEPS_PER_EPOCH, STEPS_PER_EPOCH)
    run_train(data, tmp_path, "--max-steps", 12)
    assert_same_run(tmp_path, reference)


def test_a_state_written_by_the_first_version_resumes(data, reference, tmp_path):
    """state.pt from before the resume fixes: progress without 'args', 'loss' or the epoch's running
    loss sum (so that epoch's mean training loss covers the batches after the resume only)."""
    run_train(data, tmp_path, "--max-steps", 5)
    state = torch.load(tmp_path / train.STATE, weights_only=True)
    progress = json.loads(state["progress"])
    state["progress"] = json.dumps({k: progress[k] for k in ("epoch", "batch", "step", "seconds", "history")})
    torch.save(state, tmp_path / train.STATE)
    run_train(data, tmp_path, "--max-steps", 12)
    assert_same_run(tmp_path, reference, first_epoch_loss=False)


def test_resuming_with_another_config_or_batch_size_is_refused(data, tmp_path):
    run_train(data, tmp_path, "--max-steps", 1)
    with pytest.raises(SystemExit, match="was trained with DrawConfig"):
        run_train(data, tmp_path, "--z-size", 5)
    with pytest.raises(SystemExit, match="'batch_size': 8"):
        train.train(
            train.parse_args(["--data-dir", str(data), "--run", str(tmp_path), "--batch-size", "4"] + TINY_FLAGS)
        )


def test_nan_loss_stops_the_run_and_keeps_the_last_good_state(data, tmp_path, monkeypatch):
    forward = DRAW.forward
    calls = []

    def nan_at_step_5(self, x, noise=None):
        out = forward(self, x, noise)
        calls.append(1)
        return out._replace(recon=out.recon * float("nan")) if len(calls) == 6 else out

    monkeypatch.setattr(DRAW, "forward", nan_at_step_5)
    with pytest.raises(SystemExit, match=r"loss is nan at step 5.*last good state is in") as e:
        run_train(data, tmp_path / "run", "--save-every", 2, "--export", tmp_path / "export")
    assert str(tmp_path / "run" / train.STATE) in str(e.value.code)
    state = read_state(tmp_path / "run")
    assert state["progress"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())


def test_non_finite_gradient_stops_before_the_update(data, tmp_path, monkeypatch):
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, c: clip(p, c) * float("inf"))
    with pytest.raises(SystemExit, match="gradient norm is inf at step 0"):
        run_train(data, tmp_path)
    assert not (tmp_path / train.STATE).exists()


@pytest.mark.parametrize("which, name", [("--run", "out"), ("--export", "out"), ("--export", "out/{epoch}")])
def test_unwritable_output_directory_is_reported_before_anything_else(tmp_path, which, name):
    (tmp_path / "a-file").write_text("")
    args = {"--run": tmp_path / "run", "--export": tmp_path / "export"}
    args[which] = tmp_path / "a-file" / name  # a directory inside a regular file: unwritable even for root
    flags = ["--data-dir", str(tmp_path / "no-data-here")] + [str(v) for kv in args.items() for v in kv]
    with pytest.raises(SystemExit, match=f"cannot write to {tmp_path / 'a-file' / 'out'}"):
        train.train(train.parse_args(flags + TINY_FLAGS))


def test_missing_data_is_reported(tmp_path):
    with pytest.raises(SystemExit, match="binarized_mnist_valid.amat: not found"):
        train.train(train.parse_args(["--data-dir", str(tmp_path), "--run", str(tmp_path / "run")] + TINY_FLAGS))


class Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('ran')",))


@pytest.mark.parametrize("content", ["garbage", "truncated", "pickle"])
def test_damaged_state_is_reported_and_never_run(data, tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run_train(data, run, "--max-steps", 1)
    state = run / train.STATE
    blob = {"garbage": b"\x00not a state" * 10, "truncated": state.read_bytes()[:-200], "pickle": None}[content]
    if blob is None:
        torch.save({"model": Payload()}, state)
    else:
        state.write_bytes(blob)
    with pytest.raises(SystemExit, match=f"{state} is unreadable"):
        run_train(data, run)
    assert not (tmp_path / "PWNED").exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt")
    run_train(data, directory / "run", "--epochs", 2, "--export", directory / "export")
    return directory / "export"


def test_export_writes_a_loadable_checkpoint(tiny_checkpoint):
    model, metadata = checkpoint.load(tiny_checkpoint)
    assert metadata["epochs"] == 2 and metadata["steps"] == 2 * STEPS_PER_EPOCH
    assert [h["epoch"] for h in metadata["history"]] == [1, 2]


def test_evaluate_cli_prints_and_records_the_bound(data, tiny_checkpoint, capsys):
    evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--iw-samples", "4", "--record"])
    out = capsys.readouterr().out
    assert "24 test images" in out and "NLL bound" in out and "IW NLL (k=4)" in out
    _, metadata = checkpoint.load(tiny_checkpoint)
    assert metadata["test_images"] == 24 and metadata["test_iw_samples"] == 4
    assert "active units" in out and 0 <= metadata["test_active_units"] <= TINY["T"] * TINY["z_size"]
    assert metadata["test_nll_nats"] == pytest.approx(metadata["test_recon_nats"] + metadata["test_kl_nats"], abs=0.02)


def test_evaluate_cli_errors(data, tiny_checkpoint, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="config.json: missing"):
        evaluate.main([str(tmp_path), "--data-dir", str(data)])
    with pytest.raises(SystemExit, match="binarized_mnist_test.amat: not found"):
        evaluate.main([str(tiny_checkpoint), "--data-dir", str(tmp_path)])
    # refused before the (long) evaluation runs, not after it
    monkeypatch.setattr(evaluate, "nll_bound", lambda *a, **k: pytest.fail("evaluated before refusing"))
    for flags in (["--limit", "5"], ["--split", "train+valid"], ["--resample"]):
        with pytest.raises(SystemExit, match="--record needs the full standard test set"):
            evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--record", *flags])
    with pytest.raises(SystemExit, match="resampling needs split test or train\\+valid"):
        evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--split", "valid", "--resample"])
    with pytest.raises(SystemExit, match="t10k-images-idx3-ubyte: not found"):  # the tiny data has no grey test
        evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--resample"])


def test_load_split_reads_the_binarized_rows_or_resamples_the_grey_digits(data):
    train_valid = evaluate.load_split(data, "train+valid")
    parts = [evaluate.load_split(data, s) for s in ("train", "valid")]
    assert torch.equal(train_valid, torch.cat(parts)) and train_valid.shape == (56, 28, 28)
    grey = torch.from_numpy(load_mnist(data, "train")[0])
    samples = torch.stack([evaluate.load_split(data, "train+valid", resample_seed=s) for s in range(200)])
    assert samples.shape == (200, *grey.shape) and set(samples.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(samples[0], evaluate.load_split(data, "train+valid", resample_seed=0))
    assert not torch.equal(samples[0], samples[1])
    # each pixel is a Bernoulli draw with its grey level as probability
    assert (samples.mean(0) - grey).abs().max() < 0.15 and not samples[:, grey == 0].any()
    with pytest.raises(ValueError, match="resampling needs split"):
        evaluate.load_split(data, "train", resample_seed=0)


def test_evaluate_cli_scores_the_training_images(data, tiny_checkpoint, capsys):
    evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--split", "train+valid"])
    out = capsys.readouterr().out
    assert "56 train+valid images" in out and "NLL bound" in out
    assert "active units" not in out  # measured on the test set only, as recorded
    evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--split", "train+valid", "--resample"])
    assert "56 train+valid images, binarized afresh from grey MNIST" in capsys.readouterr().out


def test_active_units_are_the_latents_whose_posterior_mean_varies():
    """Only mu of dimension 0 reads the encoder: it is active at every step, no other dimension is."""
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**TINY)).eval()
    with torch.no_grad():
        model.latent.weight.zero_()
        model.latent.bias.zero_()
        model.latent.weight[0].normal_(0, 20)
    images = (torch.rand(30, 28, 28) < torch.linspace(0, 1, 30)[:, None, None]).float()  # blank to full
    active = evaluate.active_units(model, images, batch_size=7)
    assert active.shape == (TINY["T"], TINY["z_size"])
    assert active[:, 0].all() and not active[:, 1:].any()


def test_bound_passes_average_posterior_samples_and_give_their_standard_error():
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**TINY)).eval()
    with torch.no_grad():
        model.latent.weight.mul_(10)
    images = (torch.rand(24, 28, 28) < 0.3).float()
    one, four = evaluate.nll_bound(model, images), evaluate.nll_bound(model, images, passes=4)
    assert "nll_se" not in one and four["nll_se"] > 0
    assert four["nll"] != one["nll"] and abs(four["nll"] - one["nll"]) < 10 * four["nll_se"]
    assert four["nll"] == pytest.approx(four["recon"] + four["kl"])
    with torch.no_grad():  # sigma -> 0: every sample of z is mu, so the passes agree exactly
        model.latent.bias[TINY["z_size"] :] = -200.0
        model.latent.weight[TINY["z_size"] :] = 0.0
    one, four = evaluate.nll_bound(model, images), evaluate.nll_bound(model, images, passes=4)
    assert four["nll_se"] == 0 and four["nll"] == pytest.approx(one["nll"], rel=1e-12)


def test_evaluate_cli_records_the_passes_and_their_standard_error(data, tiny_checkpoint, capsys):
    evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--passes", "3", "--record"])
    assert "Monte Carlo standard error, 3 passes" in capsys.readouterr().out
    meta = checkpoint.read_info(tiny_checkpoint)[1]
    assert meta["test_bound_passes"] == 3 and meta["test_nll_se_nats"] > 0
    evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--record"])
    meta = checkpoint.read_info(tiny_checkpoint)[1]
    assert meta["test_bound_passes"] == 1 and "test_nll_se_nats" not in meta
    with pytest.raises(SystemExit, match="--passes must be at least 1"):
        evaluate.main([str(tiny_checkpoint), "--data-dir", str(data), "--passes", "0"])


def test_importance_weighted_estimate_is_tighter_than_the_bound():
    """E[-log w] with k = 1 is the -ELBO itself; more samples can only lower it (Burda et al.).
    The latent layer is scaled up so that q is far from the prior and the gap is clear."""
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**TINY)).eval()
    with torch.no_grad():
        model.latent.weight.mul_(10)
    images = (torch.rand(24, 28, 28) < 0.3).float()
    bound = evaluate.nll_bound(model, images.repeat(20, 1, 1))
    assert bound["kl"] > 1
    iw = {k: evaluate.iw_nll(model, images.repeat(20 // k, 1, 1), k) for k in (1, 20)}
    assert iw[1] == pytest.approx(bound["nll"], abs=0.5)
    assert iw[20] < bound["nll"] - 1


# Distributed: launches two processes with torchrun (gloo on CPU), a few seconds.
@pytest.mark.skipif(importlib.util.find_spec("torch.distributed.run") is None, reason="torchrun is not available")
def test_torchrun_two_processes_train_like_one(data, reference, tmp_path):
    """Each rank takes half of every batch and DDP averages the gradients: the same run as one process."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "draw.train",
        "--data-dir",
        str(data),
    ]
    cmd += ["--run-dir", str(tmp_path), "--batch-size", "8", "--val-size", "8", "--epochs", "3", "--max-steps", "12"]
    done = subprocess.run(cmd + TINY_FLAGS + ["--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_state(tmp_path), read_state(reference)
    assert a["progress"]["step"] == 12
    assert a["progress"]["history"][0]["train_loss"] == pytest.approx(b["progress"]["history"][0]["train_loss"])
    for k, v in a["model"].items():
        torch.testing.assert_close(v, b["model"][k], rtol=1e-4, atol=1e-5)


@needs_cxx
def test_compiled_step_trains_like_the_eager_one(data, reference, tmp_path):
    run_train(data, tmp_path, "--max-steps", 12, "--compile")
    a, b = read_state(tmp_path), read_state(reference)
    assert a["progress"]["step"] == 12
    (record_a,), (record_b,) = a["progress"]["history"], b["progress"]["history"]
    assert record_a["train_loss"] == pytest.approx(record_b["train_loss"], rel=1e-5)
    assert record_a["val_nll"] == pytest.approx(record_b["val_nll"], rel=1e-5)
    for k, v in a["model"].items():
        torch.testing.assert_close(v, b["model"][k], rtol=1e-4, atol=1e-5)


def test_compile_without_a_cxx_compiler_is_one_clear_error(data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)  # a cached build needs no compiler
    torch._dynamo.reset()  # nor does code dynamo already holds
    with pytest.raises(SystemExit, match="error: --compile: .*C\\+\\+ compiler"):
        train.main(
            [
                "--data-dir",
                str(data),
                "--run",
                str(tmp_path / "run"),
                "--batch-size",
                "8",
                "--max-steps",
                "1",
                "--compile",
            ]
            + TINY_FLAGS
        )
    torch._dynamo.reset()


def test_ema_averages_the_weights_after_every_step(data, tmp_path):
    """--ema 0.5 from the initial weights w0: after step 1 the average is (w0 + w1) / 2, after
    step 2 it is (average_1 + w2) / 2; the optimizer's weights are the plain ones."""
    torch.manual_seed(0)  # as the trainer does before building the model
    w0 = DRAW(DrawConfig(**TINY)).state_dict()
    run_train(data, tmp_path, "--max-steps", 1, "--ema", 0.5)
    one = read_state(tmp_path)
    run_train(data, tmp_path, "--max-steps", 2, "--ema", 0.5)
    two = read_state(tmp_path)
    for k in w0:
        torch.testing.assert_close(one["ema"][k], (w0[k] + one["model"][k]) / 2)
        torch.testing.assert_close(two["ema"][k], (one["ema"][k] + two["model"][k]) / 2)
    assert not torch.equal(two["ema"]["head.weight"], two["model"]["head.weight"])


def test_ema_resumes_exactly_and_is_what_is_validated_and_exported(data, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    steps = STEPS_PER_EPOCH  # the export is written at the epoch's end
    run_train(data, whole, "--max-steps", steps, "--ema", 0.9, "--export", whole / "export")
    run_train(data, resumed, "--max-steps", 3, "--ema", 0.9)
    run_train(data, resumed, "--max-steps", steps, "--ema", 0.9)
    assert_same_run(resumed, whole)
    state = read_state(whole)
    model, metadata = checkpoint.load(whole / "export")
    assert metadata["ema"] == 0.9
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["ema"][k]), k
    _, val_x = train.load_training_data(data, "train+valid", "static", 8)
    (record,) = state["progress"]["history"]
    assert record["val_nll"] == pytest.approx(evaluate.nll_bound(model, val_x, progress=False)["nll"], rel=1e-6)
    with pytest.raises(SystemExit, match="--ema 1.0"):
        run_train(data, tmp_path / "bad", "--ema", 1.0)


def test_init_from_an_export_continues_its_epochs_and_history(data, tmp_path):
    """With state.pt gone, --init-from the exported checkpoint carries on at the next epoch."""
    first = run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt")
    progress = run_train(data, tmp_path / "b", "--epochs", 2, "--init-from", tmp_path / "ckpt")
    assert progress["step"] == 2 * STEPS_PER_EPOCH
    assert [r["epoch"] for r in progress["history"]] == [1, 2]
    assert progress["history"][0] == first["history"][0]
    assert progress["init_from"] == f"{tmp_path / 'ckpt'} (epoch 1, step {STEPS_PER_EPOCH})"


def test_init_from_with_another_batch_size_continues_the_epochs_with_a_new_schedule(data, tmp_path, monkeypatch):
    """A GPU continuation takes larger batches: epochs and history go on, the lr schedule restarts."""
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt", "--lr-decay", 0.5)
    rates = []
    monkeypatch.setattr(train, "set_learning_rate", lambda optimizer, lr: rates.append(lr))
    progress = run_train(
        data, tmp_path / "b", "--epochs", 3, "--init-from", tmp_path / "ckpt", "--batch-size", 16, "--lr-decay", 0.5
    )
    # 56 images: 7 steps of 8 in the first epoch, then 3 of 16 an epoch
    history = [(r["epoch"], r["step"], r["batch_size"]) for r in progress["history"]]
    assert history == [(1, 7, 8), (2, 10, 16), (3, 13, 16)]
    assert progress["lr_from_step"] == STEPS_PER_EPOCH
    assert rates == pytest.approx([1e-3 * 0.5 ** (i / 3) for i in range(6)])
    flags = ("--batch-size", 16, "--export", tmp_path / "ckpt2", "--init-from", tmp_path / "ckpt")
    exported = run_train(data, tmp_path / "c", "--epochs", 2, *flags)
    continued = run_train(data, tmp_path / "d", "--epochs", 3, "--batch-size", 16, "--init-from", tmp_path / "ckpt2")
    assert exported["lr_from_step"] == continued["lr_from_step"] == STEPS_PER_EPOCH
    assert [r["step"] for r in continued["history"]] == [7, 10, 13]


def test_the_run_says_whether_its_learning_rate_schedule_starts_or_goes_on(data, tmp_path, capsys):
    """--init-from with the export's own --lr and --lr-decay carries its schedule on, at the decayed rate."""
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt", "--lr-decay", 0.5, "--warmup", 2)
    assert "learning rate: a new schedule, --lr 0.001 x 0.5 per epoch, 2 warm-up steps" in capsys.readouterr().out
    run_train(data, tmp_path / "b", "--epochs", 2, "--init-from", tmp_path / "ckpt", "--lr-decay", 0.5, "--warmup", 2)
    going_on = "learning rate: 0.0005, going on with the schedule of --lr 0.001 x 0.5 per epoch begun at step 0"
    assert going_on in capsys.readouterr().out
    run_train(data, tmp_path / "c", "--epochs", 2, "--init-from", tmp_path / "ckpt", "--lr-decay", 0.7)
    assert "learning rate: a new schedule, --lr 0.001 x 0.7 per epoch, 0 warm-up steps" in capsys.readouterr().out


def test_warmup_ramps_up_the_start_of_a_new_schedule(data, tmp_path, monkeypatch):
    """--warmup 4: the new schedule's first four steps take 1/4, 2/4, 3/4 and all of the decayed lr."""
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt")
    rates = []
    monkeypatch.setattr(train, "set_learning_rate", lambda optimizer, lr: rates.append(lr))
    flags = ("--init-from", tmp_path / "ckpt", "--batch-size", 16, "--lr-decay", 0.5, "--warmup", 4)
    run_train(data, tmp_path / "b", "--epochs", 3, *flags)
    assert rates == pytest.approx([1e-3 * min(1, (i + 1) / 4) * 0.5 ** (i / 3) for i in range(6)])
    with pytest.raises(SystemExit, match="--warmup -1"):
        run_train(data, tmp_path / "bad", "--warmup", -1)


def test_init_from_an_export_whose_records_lack_the_batch_size_fills_in_the_sources(data, tmp_path):
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt")
    cfg, meta = checkpoint.read_info(tmp_path / "ckpt")  # as exports were before records carried it
    meta["history"] = [{k: v for k, v in r.items() if k not in ("batch_size", "binarize")} for r in meta["history"]]
    del meta["binarize"]
    checkpoint.write_info(tmp_path / "ckpt", cfg, meta)
    progress = run_train(data, tmp_path / "b", "--epochs", 2, "--init-from", tmp_path / "ckpt", "--batch-size", 16)
    assert [(r["batch_size"], r["binarize"]) for r in progress["history"]] == [(8, "static"), (16, "static")]


def test_dynamic_binarization_resamples_the_grey_images_at_every_step(data, tmp_path):
    args = train.parse_args(
        ["--data-dir", str(data), "--run", str(tmp_path), "--binarize", "dynamic", "--batch-size", "8"]
    )
    train_x, _ = train.load_training_data(data, args.train_split, args.binarize, 8)
    assert ((train_x > 0.1) & (train_x < 0.9)).any()  # grey, not the binarized files
    order, cfg = torch.arange(len(train_x)), DrawConfig(**TINY)
    batches = torch.stack([train.make_batch(train_x, order, 0, step, args, cfg)[0] for step in range(400)])
    assert set(batches.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(batches[0], batches[1])
    assert torch.equal(train.make_batch(train_x, order, 0, 5, args, cfg)[0], batches[5])  # a resume redraws it
    torch.testing.assert_close(batches.mean(0), train_x[:8], atol=0.12, rtol=0)  # samples of the grey image


def test_a_continuation_with_dynamic_binarization_is_marked_in_the_history(data, tmp_path):
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt")
    flags = ("--init-from", tmp_path / "ckpt", "--binarize", "dynamic", "--export", tmp_path / "ckpt2")
    progress = run_train(data, tmp_path / "b", "--epochs", 2, *flags)
    assert [(r["epoch"], r["binarize"]) for r in progress["history"]] == [(1, "static"), (2, "dynamic")]
    assert checkpoint.read_info(tmp_path / "ckpt2")[1]["binarize"] == "dynamic"


def test_init_from_with_another_beta_fine_tunes_from_epoch_zero(data, tmp_path):
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt")
    source, _ = checkpoint.load(tmp_path / "ckpt")
    progress = run_train(
        data, tmp_path / "b", "--epochs", 1, "--init-from", tmp_path / "ckpt", "--beta", 4, "--max-steps", 1
    )
    assert progress["step"] == 1 and progress["history"] == []
    state = read_state(tmp_path / "b")["model"]
    moved = [k for k, v in source.state_dict().items() if not torch.equal(v, state[k])]
    assert moved, "one step from the source weights should change them"
    assert all((v - state[k]).abs().max() < 0.1 for k, v in source.state_dict().items())


def test_init_from_a_different_architecture_is_refused(data, tmp_path):
    run_train(data, tmp_path / "a", "--epochs", 1, "--export", tmp_path / "ckpt")
    with pytest.raises(SystemExit, match="has config"):
        run_train(data, tmp_path / "b", "--init-from", tmp_path / "ckpt", "--z-size", 3)
