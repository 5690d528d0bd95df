"""The README's results table shows what each committed checkpoint's config.json records."""

import pytest

from draw import checkpoint
from draw.explore import REPO_ROOT

COMMITTED = sorted(p.parent for p in (REPO_ROOT / "checkpoints").glob("*/config.json"))


def results_row(name: str) -> list[str]:
    """The cells of the README results-table row for checkpoint `name`."""
    rows = [line for line in (REPO_ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README: expected one results row for {name}, found {len(rows)}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


@pytest.mark.parametrize("directory", COMMITTED, ids=lambda p: p.name)
def test_results_row_matches_the_recorded_evaluation(directory):
    cfg, m = checkpoint.read_info(directory)
    _, _, epochs, bound, terms, active, _ = results_row(directory.name)
    assert epochs.split(" + ")[-1] == str(m["epochs"])
    assert bound.startswith((f"**{m['test_nll_nats']:.2f}**", f"{m['test_nll_nats']:.2f}"))
    if "test_iw_nll_nats" in m:
        assert f"k={m['test_iw_samples']}: **{m['test_iw_nll_nats']:.2f}**" in bound
    assert terms == f"{m['test_recon_nats']:.2f} + {m['test_kl_nats']:.2f}"
    assert active == f"{m['test_active_units']} of {cfg.T * cfg.z_size}"
