"""The benchmark's plain reference computes what the project computes (tiny model, fast)."""

import pytest
import torch

from draw import bench, explore
from draw.config import DrawConfig
from draw.model import DRAW
from draw.trace import reconstruct

SMALL = dict(height=9, width=10, T=5, read_n=2, write_n=3, enc_size=12, dec_size=12, z_size=3)


@pytest.fixture(params=[True, False], ids=["attention", "no-attention"])
def model(request) -> DRAW:
    torch.manual_seed(0)
    m = DRAW(DrawConfig(**SMALL, attention=request.param))
    with torch.no_grad():  # move the windows off their initial centred place
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def test_plain_trace_and_traversal_agree_with_the_project(model):
    x = torch.rand(1, 9, 10)
    eps = torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(0))  # what reconstruct(seed=0) draws
    trace, ref = reconstruct(model, x, seed=0), bench.plain_trace(model, x, eps)
    assert bench.trace_agreement(trace, ref) < 1e-5
    values = (-2.0, 0.5, 3.0)
    z_step = trace.z[:, 2].repeat(3, 1)
    z_step[:, 1] = torch.tensor(values)
    grid = explore.traversal(model, trace, 3, [1], values)
    assert bench.traversal_agreement(grid, bench.plain_traversal(model, ref, eps, 2, z_step)) < 1e-5
    assert bench.traversal_agreement(grid, bench.plain_traversal(model, ref, eps, 1, z_step)) > 1e-3


def test_agreement_detects_a_difference(model):
    x = torch.rand(1, 9, 10)
    eps = torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(0))
    ref = bench.plain_trace(model, x, eps)
    assert bench.trace_agreement(reconstruct(model, x, seed=1), ref) > 1e-3


def test_plain_loss_and_one_training_step_agree(model):
    x = (torch.rand(4, 9, 10) > 0.5).float()
    noise = torch.randn(4, 5, 3)
    torch.testing.assert_close(bench.plain_loss(model, x, noise), model.loss(x, noise)[0])
    ours, ref, rel, rel_after = bench.training_agreement(model, x, noise)
    assert rel < 1e-5 and ours == pytest.approx(ref, rel=1e-5) and rel_after < 1e-4


def test_each_mode_rewrites_only_its_own_part_of_the_report():
    """`draw.bench` (CPU rows) and `draw.bench --gpu` (run on another machine) share results.md."""
    cpu, gpu = "# Benchmarks\n\n| cpu row |\n", "## GPU\n\n| gpu row |\n"
    assert bench.split_gpu(cpu + "\n" + gpu) == (cpu, gpu)
    assert bench.split_gpu(cpu) == (cpu, "")
