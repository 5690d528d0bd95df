"""Per-epoch exports (--export .../{epoch}) and draw.average over them, on a tiny DRAW."""

import pytest
import torch
from tiny import binarized_mnist_dir, run_train

from draw import average, checkpoint, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return binarized_mnist_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def epochs(data, tmp_path_factory):
    """The directory holding a 3-epoch run's exports, epochs/1 to epochs/3."""
    root = tmp_path_factory.mktemp("run")
    run_train(data, root / "run", "--epochs", 3, "--export", root / "epochs" / "{epoch}")
    return root / "epochs"


def test_an_export_naming_epoch_keeps_every_epochs_checkpoint(epochs):
    assert sorted(p.name for p in epochs.iterdir()) == ["1", "2", "3"]
    for e in (1, 2, 3):
        _, metadata = checkpoint.load(epochs / str(e))
        assert metadata["epochs"] == e and len(metadata["history"]) == e


def test_an_export_with_other_braces_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--run", str(tmp_path), "--export", str(tmp_path / "{step}")])
    assert "only {epoch} may stand in braces" in capsys.readouterr().err


def test_the_average_is_the_mean_of_the_weights_with_the_latest_metadata(epochs):
    inputs = [checkpoint.load(epochs / e) for e in ("1", "2", "3")]
    model, metadata = average.average([str(epochs / e) for e in ("3", "1", "2")])
    for name, tensor in model.state_dict().items():
        expected = sum(m.state_dict()[name].double() for m, _ in inputs) / 3
        torch.testing.assert_close(tensor, expected.float(), rtol=0, atol=1e-7)
    latest = inputs[2][1]
    assert {k: v for k, v in metadata.items() if k != "averaged"} == latest
    assert metadata["averaged"] == [{"epochs": m["epochs"], "steps": m["steps"]} for _, m in inputs]
    assert [a["epochs"] for a in metadata["averaged"]] == [1, 2, 3]


def test_the_cli_writes_a_checkpoint_without_the_inputs_test_figures(epochs, tmp_path, capsys):
    model, metadata = checkpoint.load(epochs / "3")
    evaluated = tmp_path / "evaluated"
    checkpoint.save(model, evaluated, {**metadata, "test_nll_nats": 1.0, "evaluated": "2026-12-01"})
    average.main([str(epochs / "2"), str(evaluated), "--export", str(tmp_path / "out")])
    assert "averaged 2 checkpoints (epochs 2, 3)" in capsys.readouterr().out
    _, written = checkpoint.load(tmp_path / "out")
    assert "test_nll_nats" not in written and "evaluated" not in written
    assert written["epochs"] == 3 and [a["epochs"] for a in written["averaged"]] == [2, 3]


def test_averaging_needs_distinct_exports_of_one_run(data, epochs, tmp_path):
    with pytest.raises(SystemExit, match="at least two checkpoints"):
        average.main([str(epochs / "1"), "--export", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="distinct training export"):
        average.main([str(epochs / "1"), str(epochs / "1"), "--export", str(tmp_path / "out")])
    run_train(data, tmp_path / "other", "--epochs", 1, "--seed", 1, "--export", tmp_path / "other_export")
    with pytest.raises(SystemExit, match="not an earlier export"):
        average.main([str(tmp_path / "other_export"), str(epochs / "2"), "--export", str(tmp_path / "out")])
    run_train(data, tmp_path / "wide", "--epochs", 1, "--export", tmp_path / "wide_export", "--z-size", 5)
    with pytest.raises(SystemExit, match="config differs"):
        average.main([str(tmp_path / "wide_export"), str(epochs / "2"), "--export", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
