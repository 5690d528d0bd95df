"""CUDA-only paths, run where a GPU is present (skipped elsewhere): the graphed training step."""

import copy
from types import SimpleNamespace

import pytest
import torch

from draw import train
from draw.config import DrawConfig
from draw.model import DRAW

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("attention", [True, False])
def test_graphed_steps_match_eager_steps(attention):
    """Three graph replays and three eager steps from the same weights on the same batches and
    noise: the same losses, gradient norms and weights after, and a fresh Adam's first step."""
    torch.manual_seed(0)
    model = DRAW(DrawConfig(T=8, attention=attention)).cuda()
    eager = copy.deepcopy(model)
    graphed_opt, eager_opt = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (model, eager))
    train.set_capturable(graphed_opt, True)
    train.set_capturable(eager_opt, False)
    before = copy.deepcopy(model.state_dict())
    step = train.GraphedStep(model, graphed_opt, clip=10.0, batch=32)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"the capture's warm-up left {k} changed"
    args = SimpleNamespace(clip=10.0)
    for i, lr in enumerate([1e-3, 5e-4, 2e-4]):
        x = torch.rand(32, 28, 28).round()
        noise = torch.randn(32, 8, 100)
        train.set_learning_rate(graphed_opt, lr)
        train.set_learning_rate(eager_opt, lr)
        loss, kl, norm = step(x, noise)
        eager_loss, eager_kl = train.train_step(eager, eager_opt, args, x, noise, i, train.Stop(), 0, 1)
        assert loss == pytest.approx(eager_loss, rel=1e-5)
        assert kl == pytest.approx(eager_kl, rel=1e-4, abs=1e-4)
    for (name, a), b in zip(model.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
