"""Paper 002 §8.5 on a tiny configuration: trap weights extract B = 1 images exactly with no iteration, where a
short gradient inversion does not; the run resumes."""
from fedleak.experiments.vs_inversion import VsInversionConfig, reproduce_vs_inversion


def test_tiny_vs_inversion(tmp_path):
    config = VsInversionConfig(dataset="bundled", model_options={"widths": (300, 8)}, images=2, iterations=20)
    result = reproduce_vs_inversion(config, tmp_path, progress=False)
    trap, ig = result["cells"]["trap_weights"], result["cells"]["ig"]
    assert trap["mse"] < 1e-10 and trap["near_recall_psnr30"] == 1.0 and trap["backward_passes"] == 0
    assert ig["mse"] > 1e-4 and ig["backward_passes"] == 20
    assert "10^4 iterations" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    reproduce_vs_inversion(config, tmp_path, progress=False)
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells
