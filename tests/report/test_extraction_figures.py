"""The extraction figures: a batch below its extractions, and a defense study's best candidates per setting."""
import torch

from fedleak.report.extraction_figures import FIGURE_INPUTS, best_candidate_grid, extraction_figure, study_figures


def test_extraction_figure_and_study_grid_write_images(tmp_path):
    x = torch.rand(12, 1, 8, 8)
    recovered = torch.arange(12) % 2 == 0
    path = extraction_figure(x, x.clone(), recovered, tmp_path / "fig.png", count=12, per_row=5)
    assert path.exists() and path.stat().st_size > 0
    settings = {None: (x, x, torch.full((12,), 100.0)), 1: (x, torch.zeros_like(x), torch.zeros(12))}
    chosen = []

    def images(setting):
        chosen.append(setting)
        return settings[setting]

    grid = best_candidate_grid(images, None, [1], ["noisy"], tmp_path / "grid.png", near_psnr=30)
    assert grid.exists() and chosen == [None, 1]
    line = study_figures(tmp_path / "curve.png", images, None, [1], ["noisy"], setting="sigma", clean="clean",
                         near_psnr=30)
    assert f"up to {FIGURE_INPUTS} inputs" in line and (tmp_path / "extractions.png").exists()
