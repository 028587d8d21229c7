"""pipeline.report: the HTML report of a run, its figures, and its rendering in a real browser.

Reports the runs of test_evaluation_gate (A: first model, blessed; C: weak candidate against A,
not blessed). The browser test needs Debian's `chromium` (.ci/run installs it) and skips without.
"""
import base64
import html.parser
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from run_report import report, tfma_results as report_tfma
from test_evaluation_gate import pipeline_runs

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


# ---------------------------------------------------------------- pure helpers (fast)

def test_find_metadata_from_output_dir_pipeline_root_or_file(tmp_path):
    db = tmp_path / "metadata" / "p" / "metadata.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    (tmp_path / "pipelines" / "p").mkdir(parents=True)
    assert report.find_metadata(str(tmp_path)) == str(db)
    assert report.find_metadata(str(tmp_path / "pipelines" / "p")) == str(db)
    assert report.find_metadata(str(db)) == str(db)
    with pytest.raises(FileNotFoundError):
        report.find_metadata(str(tmp_path / "pipelines"))


def test_per_class_fallback_from_confusion_matrix():
    matrix = np.array([[2, 1, 0], [1, 1, 0], [0, 1, 0]], dtype=float)  # class 2 never predicted
    assert report._from_matrix(matrix, 0) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert report._from_matrix(matrix, 1) == pytest.approx((1 / 3, 1 / 2, 0.4))
    precision, recall, f1 = report._from_matrix(matrix, 2)
    assert np.isnan(precision) and (recall, f1) == (0.0, 0.0)  # as TFMA reports 0/0


def test_expected_calibration_error():
    buckets = [report_tfma.CalibrationBucket(0.4, 0.5, count=10, total_label=5, total_prediction=4.5),
               report_tfma.CalibrationBucket(0.9, 1.0, count=30, total_label=24, total_prediction=28.5)]
    # (|4.5 - 5| + |28.5 - 24|) / 40
    assert report_tfma.expected_calibration_error(buckets) == pytest.approx(5.0 / 40)
    assert report_tfma.expected_calibration_error([]) is None


# ---------------------------------------------------------------- reports of real runs (slow)

class _Page(html.parser.HTMLParser):
    """Section ids, <img> sources and visible text of a report."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.chunks = [], [], []
        self.feed(text)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_data(self, data):
        self.chunks.append(data)


def _decoded_images(page: _Page):
    images = []
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()  # decodes every pixel: a truncated PNG fails here
        images.append(image)
    return images


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return pipeline_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def weak_report(runs):
    """The report of run C, in the default place (under the pipeline root)."""
    return report.write_report(runs.cfg.metadata_path, run_id=runs.run_ids[2])


@pytest.mark.slow
def test_report_of_a_rejected_candidate(runs, weak_report):
    assert weak_report.startswith(os.path.join(runs.cfg.pipeline_root, "reports") + os.sep)
    with open(weak_report) as f:
        page = _Page(f.read())
    assert page.ids == list(report.SECTION_IDS)
    assert "NOT BLESSED" in page.text and "nothing was pushed" in page.text
    # The failed absolute bound and the change threshold against A, each with value and bound.
    assert re.search(r"sparse_categorical_accuracy lower bound overall [0-9.]+ >= 0\.5 FAILED", page.text)
    assert re.search(r"sparse_categorical_accuracy change vs baseline overall -?[0-9.]+ "
                     r"candidate - baseline >= -0\.02", page.text)
    baseline_uri = runs.nodes[0]["Trainer"].uri("model")
    assert f"Baseline: the latest blessed model other than the candidate, {baseline_uri}" in page.text
    for class_name in ("buildings", "forest", "glacier", "mountain", "sea", "street"):
        assert f"class_name={class_name}" in page.text
    assert "Expected calibration error" in page.text
    assert "learning_rate 1e-06" in page.text
    assert "180 files seen, 180 ingested, 0 skipped" in page.text
    images = _decoded_images(page)
    # Confusion matrices (candidate, baseline), reliability, training curves, LR schedule, data.
    assert len(images) >= 5
    pngs = sorted(f for f in os.listdir(os.path.dirname(weak_report)) if f.endswith(".png"))
    assert {"confusion_matrix.png", "baseline_confusion_matrix.png", "training_curves.png",
            "examples_per_class.png", "reliability.png"} <= set(pngs)
    if os.path.exists(os.path.join(runs.nodes[2]["Trainer"].uri("model_run"), "lr_schedule.png")):
        assert "lr_schedule.png" in pngs


@pytest.mark.slow
def test_report_of_the_first_run_from_the_command_line(runs, tmp_path, capsys):
    out = tmp_path / "first"
    assert report.main([runs.cfg.output_dir, "--run-id", runs.run_ids[0], "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    page = _Page((out / "report.html").read_text())
    assert "BLESSED: the candidate passed every threshold; pushed to" in page.text
    assert re.search(r"change vs baseline overall – candidate - baseline >= -0\.02 \(higher is better\) "
                     r"not applied no baseline", page.text)
    assert "No baseline: no other model had been blessed" in page.text
    _decoded_images(page)
    assert report.main([runs.cfg.output_dir, "--list"]) == 0
    assert capsys.readouterr().out.split() == runs.run_ids


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium not installed (Debian: apt-get install -y chromium); browser check skipped")


# Marks the page once everything has loaded: how many images, how many failed to decode.
_IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0);
  broken.forEach(i => i.setAttribute("data-broken", "1"));
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-broken-images", broken.length);
});
</script>"""


def _run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=True)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(weak_report, tmp_path):
    _chromium()
    with open(weak_report) as f:
        page = f.read()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", _IMAGE_CHECK + "</body>"))
    dom = _run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()).stdout
    n_images = len(_Page(page).images)
    assert f'data-images="{n_images}"' in dom, dom[-500:]
    assert 'data-broken-images="0"' in dom
    shot = tmp_path / "shot.png"
    _run_chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", checked.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    not_white = (pixels < 245).any(axis=2).mean()
    assert 0.02 < not_white < 0.9, not_white  # text, tables and figures: neither blank nor a block
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # heat maps and plots, not flat text
