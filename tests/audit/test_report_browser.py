"""The audit's report page in a real browser (issue 15): headless Chromium renders it and takes a screenshot; every
image on the page is an embedded PNG whose file exists beside the page. Skipped where Chromium is absent."""
import base64
import io
import json
import re
import shutil
import subprocess
import textwrap

import pytest
from PIL import Image

from fedleak.audit import AuditConfig, run_audit

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
WIDTH, HEIGHT = 1200, 4000  # tall enough for the whole page


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    (folder / "fc_model.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        def make(input_shape, num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, num_classes))
    """))
    config = AuditConfig.quick_profile(model=f"{folder / 'fc_model.py'}:make", data="bundled", size=(28, 28),
                                       attacks=("passive",), victims=1, batch_size=4, defenses=("prune:p=0.9",),
                                       utility_rounds=1, utility_clients=2)
    run_audit(config, folder / "out", progress=False)
    return folder / "out"


def test_every_image_is_an_embedded_png_whose_file_exists(report_folder):
    page = (report_folder / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*data-file="([^"]+)"', page)
    assert len(images) == page.count("<img ") == 3  # two grids (undefended, pruned) and the plot
    for data, name in images:
        assert (report_folder / name).read_bytes() == base64.b64decode(data)
        assert Image.open(io.BytesIO(base64.b64decode(data))).format == "PNG"
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def _dark_pixels(picture) -> int:
    return sum(picture.convert("L").histogram()[:200])


def _screenshot(page, shot):
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return Image.open(shot)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(report_folder, tmp_path):
    page = (report_folder / "report.html").read_text()
    picture = _screenshot(report_folder / "report.html", tmp_path / "report.png")
    assert picture.size == (WIDTH, HEIGHT)
    assert (tmp_path / "report.png").stat().st_size > 50_000  # not a blank page
    broken = tmp_path / "broken.html"  # the same page with its images' data removed: broken-image icons
    broken.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', page))
    without_images = _screenshot(broken, tmp_path / "broken.png")
    embedded = sum(_dark_pixels(Image.open(report_folder / name)) for name in re.findall(r'data-file="([^"]+)"', page))
    drawn = _dark_pixels(picture) - _dark_pixels(without_images)
    assert drawn > 0.5 * embedded  # the images are drawn at their size (measured 106k of 111k)


def test_the_verdict_leads_the_page(report_folder):
    page = (report_folder / "report.html").read_text()
    report = json.loads((report_folder / "report.json").read_text())
    assert list(report)[0] == "verdict" and report["verdict"]["leak"]["leaks"] is True  # passive: exact copies
    assert page.index(">Verdict<") < page.index("1. How much does an update leak?")
    assert report["verdict"]["leak"]["text"] in page.replace("&#x27;", "'")
    assert "passed (" not in page  # no "passed (0 vs 0)" noise
