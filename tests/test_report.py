"""``mlobs report``: built from a processor fed by the taxi scenario, rendered by a real browser.

The page must stand alone (nothing to fetch), say what the incidents were (the stuck East Village
settlements, the weather outage, the suspects), and its charts must really be drawn: headless
Chromium's DOM holds the SVG marks, and its screenshot holds pixels in the series' colours.
"""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from _fed_stack import MODEL, PIPELINE, FedStack, fed_stack
from _tools import need

from otel_mlobs import report, report_plots
from otel_mlobs.cli import main


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> FedStack:
    return fed_stack(request)


@pytest.fixture(scope="module")
def page(stack: FedStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", "--url", stack.api_url, "-o", str(out)]) == 0
    return out


class _Marks(HTMLParser):
    """Counts what the charts are made of."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: list[dict[str, list[dict[str, str]]]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "svg" and "plot" in a.get("class", ""):
            self.plots.append({"path": [], "polygon": [], "circle": []})
        elif self.plots and tag in ("path", "polygon", "circle"):
            self.plots[-1][tag].append(a)


def marks(html: str) -> _Marks:
    parser = _Marks()
    parser.feed(html)
    return parser


def test_the_page_stands_alone_and_tells_what_happened(page: Path) -> None:
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    for external in ("<script", "<link", "<img", "<iframe", "src=", "@import", "url("):
        assert external not in html
    assert set(re.findall(r'xmlns="([^"]+)"', html)) == {"http://www.w3.org/2000/svg"}
    assert f"{MODEL}" in html and f"pipeline {PIPELINE}" in html
    assert "pickup_zone = East Village" in html  # the feedback outage
    assert "temperature_f: all" in html  # the weather source failed
    assert "features.precipitation_in" in html  # ranked first among the suspects
    found = marks(html)
    # accuracy and volume per model, the alert timeline, suspects and stuck patterns
    assert len(found.plots) == 5
    accuracy = found.plots[0]
    assert {p["stroke"] for p in accuracy["path"]} >= {
        report_plots.PALETTE[m] for m in report.METHODS
    }
    assert all(p["d"].count("L") >= 3 for p in accuracy["path"])  # a line over several days
    assert len(accuracy["polygon"]) >= 3  # a band per method


def test_the_browser_draws_the_charts(page: Path, tmp_path: Path) -> None:
    chromium = need("chromium")
    base = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = marks(dom.stdout)
    assert len(rendered.plots) == 5
    for plot in rendered.plots:
        assert [p for p in plot["path"] if re.search(r"[ML]\s*-?\d", p.get("d", ""))]
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [*base, "--window-size=1000,900", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = read_png(shot)
    assert pixels.shape[:2] == (900, 1000)
    for method in report.METHODS:  # each accuracy line is painted in its own colour
        assert colour_count(pixels, report_plots.PALETTE[method]) > 150, method


def test_an_unreachable_processor_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from otel_mlobs.promrun import free_port

    out = tmp_path / "r.html"
    code = main(["report", "--url", f"http://127.0.0.1:{free_port()}", "-o", str(out)])
    assert code == 3 and not out.exists()
    assert "cannot reach the processor" in capsys.readouterr().err


def test_an_unknown_pipeline_lists_the_known_ones(stack: FedStack, tmp_path: Path, capsys) -> None:
    code = main(
        ["report", "--url", stack.api_url, "-o", str(tmp_path / "r.html"), "--pipeline", "nope"]
    )
    assert code == 1
    assert PIPELINE in capsys.readouterr().err


def test_the_url_comes_from_the_environment(stack: FedStack, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLOBS_URL", stack.api_url)
    out = tmp_path / "sub" / "only.html"
    assert main(["report", "-o", str(out), "--pipeline", PIPELINE, "--title", "Taxi <tips>"]) == 0
    html = out.read_text()
    assert "<title>Taxi &lt;tips&gt;</title>" in html and "queue_probe" not in html


def test_charts_refuse_empty_data_and_escape_text() -> None:
    with pytest.raises(ValueError):
        report_plots.line_chart([], label="x")
    svg = report_plots.bar_chart([("<b>", 2.0, "a & b")], label="t")
    assert "&lt;b&gt;" in svg and "a &amp; b" in svg
    assert report_plots.nice_ticks(0.7, 0.9) == [0.7, 0.75, 0.8, 0.85, 0.9]


# --- a small PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium writes) ----------------


def read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, prev, channels)
        out[row] = np.frombuffer(bytes(line), dtype=np.uint8)
        prev = line
    return out.reshape(height, width, channels)[:, :, :3]


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    n = len(line)
    if kind == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        line[:] = (
            (
                (
                    np.frombuffer(bytes(line), np.uint8).astype(np.uint16)
                    + np.frombuffer(bytes(prev), np.uint8)
                )
                & 0xFF
            )
            .astype(np.uint8)
            .tobytes()
        )
    elif kind == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
    else:
        assert kind == 0, f"unknown PNG filter {kind}"


def colour_count(pixels: np.ndarray, hex_colour: str, tolerance: int = 12) -> int:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    close = np.abs(pixels.astype(np.int16) - target).max(axis=2) <= tolerance
    return int(close.sum())
