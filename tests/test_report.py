"""Tests for noisegrid.report: the files written, their content, and the page in a real browser.

The browser tests drive Debian's ``chromium`` headless through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: no port, no extra Python package). They are marked ``browser`` and
skipped only when no chromium is installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from noisegrid.analysis import analyze
from noisegrid.errors import AnalysisError
from noisegrid.report import build_report, make_figures

sys.path.insert(0, str(Path(__file__).parent))
from test_analysis import effective_size, make_table, published

SIZES = (1000, 2000, 4000, 6000, 8000)
NOISE = (0.0, 0.05, 0.1, 0.2)
FAILED = [(4000, 0.1, 1)]
SPEC = {
    "name": "tiny-synthetic",
    "dataset": {"source": "imdb"},
    "grid": {"sizes": list(SIZES), "noise_rates": list(NOISE), "seeds": [0, 1]},
    "backend": {"name": "tfidf"},
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table(effective_size, sizes=SIZES, noise=NOISE, seeds=(0, 1), failed=FAILED)


@pytest.fixture(scope="module")
def report(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return build_report(table, out_dir=out, spec=SPEC, n_bootstrap=50)


# --- files ---------------------------------------------------------------------------------


def test_report_writes_every_file(report: Path):
    out = report.parent
    assert report.name == "report.html"
    assert (out / "summary.md").is_file() and (out / "results.csv").is_file()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == [
        "contours-uniform.png",
        "exchange-rate-uniform.png",
        "heatmap-uniform.png",
        "learning-curves-uniform.png",
    ]
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _ExternalRefs(HTMLParser):
    """Collects every script/link/img/iframe element that would load something."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_script_chars = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for key in ("src", "href"):
            value = found.get(key)
            if value and tag in ("script", "link", "img", "iframe") and not value.startswith("#"):
                self.refs.append(f"<{tag} {key}={value}>")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script_chars += len(data)


def test_html_is_self_contained(report: Path):
    parser = _ExternalRefs()
    parser.feed(report.read_text(encoding="utf-8"))
    assert parser.refs == []  # nothing to fetch: no CDN, no network
    assert parser.inline_script_chars > 3_000_000  # plotly.js is inlined
    page = report.read_text(encoding="utf-8")
    for fid in ("heatmap-uniform", "learning-curves-uniform", "contours-uniform"):
        assert f'id="{fid}"' in page


def test_html_has_summary_tables_and_provenance(report: Path):
    page = report.read_text(encoding="utf-8")
    assert "noisegrid report: tiny-synthetic" in page
    assert "correcting 100 labels is worth about" in page
    assert "Reference regression (as published)" in page
    assert "Candidate surfaces" in page and "effective_size_power" in page
    assert "1 failed" in page
    for entry in ("statsmodels", "plotly", "report generated", "runs finished", "tfidf", "imdb"):
        assert entry in page
    assert "&quot;noise_rates&quot;" in page  # the spec, escaped


def test_summary_md_and_results_csv(report: Path, table: pd.DataFrame):
    md = (report.parent / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# noisegrid report: tiny-synthetic")
    assert "correcting 100 labels is worth about" in md
    assert "| term | coefficient |" in md
    assert "### Local exchange rate" in md
    assert "![heatmap-uniform.png](figures/heatmap-uniform.png)" in md
    back = pd.read_csv(report.parent / "results.csv")
    assert len(back) == len(table)
    assert list(back.columns) == list(table.columns)


def test_candidate_surfaces_say_why_each_is_used_or_not(report: Path):
    md = (report.parent / "summary.md").read_text(encoding="utf-8")
    section = md.split("### Candidate surfaces", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[2:]
    assert header.endswith("| used for the rates? |")
    assert "nan" not in section
    notes = [row.rstrip(" |").rsplit("| ", 1)[1] for row in body]
    assert sum(n.startswith("yes") for n in notes) == 1
    assert all(n.startswith(("yes", "no: ")) for n in notes), notes
    assert any(n.startswith("no: CV RMSE ") for n in notes), notes
    page = report.read_text(encoding="utf-8")
    assert "skipped: nan" not in page and "used for the rates?" in page


def test_heatmap_has_one_cell_per_grid_cell(table: pd.DataFrame):
    figures = make_figures(analyze(table, n_bootstrap=0))
    heat = figures["heatmap-uniform"].data[0]
    z = np.asarray(heat.z, dtype=float)
    assert z.shape == (len(NOISE), len(SIZES))
    assert np.isfinite(z).all()
    assert list(heat.x) == [f"{n:,}" for n in SIZES]
    assert "95% interval" in heat.text[0][0]


def test_single_size_report_skips_the_surface(tmp_path: Path):
    table = make_table(published, sizes=(5000,), noise=NOISE, seeds=(0, 1))
    path = build_report(table, out_dir=tmp_path, n_bootstrap=10)
    page = path.read_text(encoding="utf-8")
    assert "at least two training sizes" in page
    assert 'id="contours-uniform"' not in page and 'id="exchange-rate-uniform"' not in page
    assert 'id="heatmap-uniform"' in page
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == [
        "heatmap-uniform.png",
        "learning-curves-uniform.png",
    ]


def test_several_noise_models_get_a_comparison_section(tmp_path: Path):
    tables = [
        make_table(published, sizes=SIZES, noise=NOISE, noise_model=nm, rng_seed=i)
        for i, nm in enumerate(("class_conditional", "uniform"))
    ]
    path = build_report(pd.concat(tables), out_dir=tmp_path, n_bootstrap=10, png=False)
    page = path.read_text(encoding="utf-8")
    assert "Comparison across noise models" in page
    assert 'id="noise-models"' in page
    assert page.index('id="heatmap-uniform"') < page.index('id="heatmap-class_conditional"')
    assert "class_conditional noise: " in page
    assert not (tmp_path / "figures").exists()


def test_report_accepts_a_spec_object_and_extra_provenance(tmp_path: Path, table: pd.DataFrame):
    class Spec:
        def to_dict(self) -> dict[str, Any]:
            return {"name": "from-object", "grid": {"sizes": [1000, 99000]}}

    path = build_report(
        table, out_dir=tmp_path, spec=Spec(), provenance={"git commit": "abc123"}, png=False,
        n_bootstrap=0,
    )  # fmt: skip
    page = path.read_text(encoding="utf-8")
    assert "noisegrid report: from-object" in page and "abc123" in page
    assert "size 99,000 at every noise level" in page  # missing runs named from the spec grid


def test_report_errors_are_actionable(tmp_path: Path, table: pd.DataFrame):
    with pytest.raises(AnalysisError, match="spec must be an ExperimentSpec or a mapping"):
        build_report(table, out_dir=tmp_path, spec=42)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(AnalysisError, match="out_dir must be a folder"):
        build_report(table, out_dir=afile)


# --- the command line -----------------------------------------------------------------------


def test_cli_report_and_tradeoff(make_dataset, write_config, tmp_path: Path):
    from typer.testing import CliRunner

    from noisegrid.cli import app

    cli = CliRunner()
    cfg = write_config(make_dataset(n_train=80), sizes="[20, 40, 80]", rates="[0.0, 0.1, 0.2]")
    assert cli.invoke(app, ["run", str(cfg), "--quiet"]).exit_code == 0
    out = tmp_path / "rep"
    result = cli.invoke(app, ["report", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out / 'report.html'}" in result.stdout
    assert "uniform noise: 9 of 9 runs done" in result.stdout
    assert {p.name for p in out.iterdir()} >= {"report.html", "summary.md", "results.csv"}
    assert "tfidf" in (out / "report.html").read_text(encoding="utf-8")

    result = cli.invoke(app, ["tradeoff", str(cfg), "--size", "40", "--noise", "0.1"])
    if result.exit_code == 0:  # a surface could be fitted to this tiny grid
        assert "At 40 examples and 10% noise" in result.stdout
    else:  # or it says, in one line, why not
        assert result.stderr.startswith("error: cannot compute an exchange rate")
    bad = cli.invoke(app, ["tradeoff", str(cfg), "--size", "40", "--noise", "10"])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        "error: noise must be a fraction in [0, 1 − 1/K) = [0, 0.5) for K = 2 classes, such as "
        "0.1; got 10; the measured grid stops at 20%; did you mean 0.1 (10%)?"
    )
    other = cli.invoke(
        app, ["tradeoff", str(cfg), "--size", "40", "--noise", "0.1", "--noise-model", "real"]
    )
    assert other.exit_code == 2 and "noise model 'real' is not in the table" in other.stderr


# --- readable labels, axes that stop at the grid ---------------------------------------------


def _analysis_for_figures(table: pd.DataFrame):
    return analyze(table, n_bootstrap=20)


def test_heatmap_labels_contrast_with_their_cells_in_the_page(table: pd.DataFrame):
    from plotly.colors import sample_colorscale, unlabel_rgb

    from noisegrid.report._colors import BLACK, WHITE, contrast_ratio

    figures = make_figures(_analysis_for_figures(table))
    for fid in ("heatmap-uniform", "exchange-rate-uniform"):
        base, *labels = figures[fid].data
        assert not base.texttemplate  # the labels are drawn by the layers above it
        z = np.asarray(base.z, dtype=float)
        labelled = np.zeros(z.shape, dtype=bool)
        for layer in labels:
            assert layer.texttemplate and layer.hoverinfo == "skip" and not layer.showscale
            assert (layer.zmin, layer.zmax, layer.colorscale) == (
                base.zmin,
                base.zmax,
                base.colorscale,
            )
            text = BLACK if layer.textfont.color == "black" else WHITE
            lz = np.asarray(layer.z, dtype=float)
            for (i, j), v in np.ndenumerate(lz):
                if np.isfinite(v):
                    assert v == z[i, j]
                    scale = [[c[0], c[1]] for c in base.colorscale]
                    t = (v - base.zmin) / (base.zmax - base.zmin)
                    rgb = [c / 255 for c in unlabel_rgb(sample_colorscale(scale, [t])[0])]
                    assert contrast_ratio(rgb, text) >= 4.5, (fid, v, layer.textfont.color)
                    labelled[i, j] = True
        assert (labelled == np.isfinite(z)).all()  # every cell with a value has one label


def test_heatmap_labels_contrast_with_their_cells_in_the_pngs(table: pd.DataFrame):
    from matplotlib.colors import to_rgb

    from noisegrid.report._colors import contrast_ratio
    from noisegrid.report._png import _heatmap

    nma = _analysis_for_figures(table).by_noise_model["uniform"]
    fig = _heatmap(nma)
    assert fig is not None
    ax = fig.axes[0]
    image = ax.images[0]
    z = np.ma.getdata(image.get_array())
    assert len(ax.texts) == np.isfinite(z).sum()
    for label in ax.texts:
        j, i = (round(c) for c in label.get_position())
        cell = image.cmap(image.norm(z[i, j]))[:3]
        assert contrast_ratio(cell, to_rgb(label.get_color())) >= 4.5, label.get_text()


def test_axes_stop_at_the_grid(table: pd.DataFrame):
    from noisegrid.report._png import _contours, _learning_curves

    analysis = _analysis_for_figures(table)
    figures = make_figures(analysis)
    curves = figures["learning-curves-uniform"].layout
    assert list(curves.xaxis.range) == [min(SIZES), max(SIZES)]
    contours = figures["contours-uniform"].layout
    assert list(contours.xaxis.range) == [min(SIZES), max(SIZES)]
    assert list(contours.yaxis.range) == [0.0, max(NOISE) * 100]
    nma = analysis.by_noise_model["uniform"]
    assert _learning_curves(nma).axes[0].get_xlim() == (min(SIZES), max(SIZES))
    ax = _contours(nma).axes[0]
    assert ax.get_xlim() == (min(SIZES), max(SIZES))
    assert ax.get_ylim() == (0.0, max(NOISE) * 100)
    # Error bars never stretch the accuracy axis past what accuracy can be.
    for trace in figures["learning-curves-uniform"].data:
        y = np.asarray(trace.y, dtype=float)
        assert (y + np.asarray(trace.error_y.array) <= 100 + 1e-9).all()
        assert (y - np.asarray(trace.error_y.arrayminus) >= -1e-9).all()


# --- the page in a real browser ------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class Chromium:
    """Headless chromium driven through the DevTools protocol on fds 3/4 (JSON + NUL)."""

    def __init__(self, exe: str, profile: Path) -> None:
        to_child_r, self._write = os.pipe()
        self._read, from_child_w = os.pipe()
        # Park the child's ends above fd 9 so the dup2 onto 3 and 4 cannot overwrite them.
        child_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire_pipes() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4, child_r, child_w),
            preexec_fn=wire_pipes,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_r)
        os.close(child_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        deadline = time.monotonic() + 60
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._next(deadline))

    def _next(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer within 60 s")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def open(self, url: str, *, width: int = 1200, height: int = 1800) -> str:
        """Open ``url`` in a new tab, wait for its load event, return the session id."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        sid = str(session["sessionId"])
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method, session=sid)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session=sid)
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=sid)
        self.wait_for("Page.loadEventFired")
        return sid

    def evaluate(self, expression: str, *, session: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                errors.append(str(text))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(str(params["entry"].get("text")))
        return errors

    def screenshot(self, *, session: str) -> bytes:
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        # The browser may already be gone; it is killed below if it does not exit.
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    chrome = Chromium(exe, tmp_path_factory.mktemp("chromium-profile"))
    yield chrome
    chrome.close()


HEATMAP_PROBE = """
new Promise(resolve => setTimeout(() => {
  const gd = document.getElementById('heatmap-uniform');
  const rows = Array.from(gd._fullData[0].z, r => Array.from(r));
  resolve({
    rows: rows.length,
    cols: rows[0].length,
    filled: rows.flat().filter(v => v !== null && !Number.isNaN(v)).length,
    labels: gd.querySelectorAll('g.heatmaplayer text').length,
    graphs: document.querySelectorAll('.plotly-graph-div .main-svg').length > 0,
    plotly: typeof Plotly === 'object' ? Plotly.version : null,
  });
}, 300))
"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(browser: Chromium, report: Path):
    sid = browser.open(report.resolve().as_uri())
    probe = browser.evaluate(HEATMAP_PROBE, session=sid)
    assert browser.console_errors() == []
    assert probe["plotly"] and probe["graphs"]
    # One heatmap cell per (size, noise) cell of the grid, each drawn with its label.
    assert (probe["rows"], probe["cols"]) == (len(NOISE), len(SIZES))
    assert probe["filled"] == len(NOISE) * len(SIZES)
    assert probe["labels"] == len(NOISE) * len(SIZES)

    from PIL import Image

    image = Image.open(io.BytesIO(browser.screenshot(session=sid))).convert("L")
    pixels = np.asarray(image, dtype=float)
    assert pixels.shape[0] > 500 and pixels.std() > 20  # not blank
    assert (pixels < 200).mean() > 0.02  # some dark ink, not an empty white page


@pytest.mark.browser
def test_browser_harness_catches_console_errors(browser: Chromium, tmp_path: Path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); undefinedFn();</script>")
    browser.open(page.resolve().as_uri())
    errors = browser.console_errors()
    assert any("boom" in e for e in errors)
    assert any("undefinedFn" in e for e in errors)
