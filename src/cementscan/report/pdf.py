"""report.pdf: report.html printed by headless Chromium, or a matplotlib PdfPages fallback."""

from __future__ import annotations

import base64
import html as htmlmod
import io
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from cementscan.atomic import atomic_path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers makes Chromium crash on big pages
)
CHROMIUM_TIMEOUT_S = 90.0


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, $CEMENTSCAN_CHROMIUM first; None when there is none."""
    env = os.environ.get("CEMENTSCAN_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(
    args: list[str], timeout: float = CHROMIUM_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with the project's flags and a fresh, throw-away profile."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found")
    with tempfile.TemporaryDirectory(prefix="cementscan-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HOME": profile},
        )


def _with_renderer_note(html_text: str, note: str) -> str:
    tag = f"<p class='sub' style='font-size:8pt;color:#555'>{htmlmod.escape(note)}</p>"
    return (
        html_text.replace("</body>", tag + "</body>", 1)
        if "</body>" in html_text
        else html_text + tag
    )


def _pdf_chromium(html_path: Path, pdf_tmp: Path) -> bool:
    text = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="cementscan-pdf-") as work:
        page = Path(work) / "report.html"
        page.write_text(
            _with_renderer_note(text, "PDF printed from report.html by headless Chromium."),
            encoding="utf-8",
        )
        out = Path(work) / "report.pdf"
        try:
            run_chromium(
                ["--no-pdf-header-footer", f"--print-to-pdf={out}", page.resolve().as_uri()]
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if (
            not out.is_file()
            or out.stat().st_size < 1000
            or not out.read_bytes().startswith(b"%PDF")
        ):
            return False
        shutil.copyfile(out, pdf_tmp)
    return True


def _html_to_blocks(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, np.ndarray]]]:
    """Crude HTML -> (kind, text) blocks and (caption, image) pairs for the fallback PDF."""
    images = []
    for m in re.finditer(r"<img alt='([^']*)'[^>]*src='data:image/png;base64,([^']+)'", text):
        rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(2)))).convert("RGB"))
        images.append((htmlmod.unescape(m.group(1)), rgb))
    body = re.sub(r"<section class='images'>.*?</section>", "", text, flags=re.S)
    body = re.sub(r"<style>.*?</style>", "", body, flags=re.S)
    blocks: list[tuple[str, str]] = []
    for m in re.finditer(r"<(h1|h2|li|p|tr)[^>]*>(.*?)</\1>", body, flags=re.S):
        inner = re.sub(r"</t[dh]>", " | ", m.group(2))
        inner = htmlmod.unescape(re.sub(r"<[^>]+>", "", inner)).strip(" |")
        if inner:
            blocks.append((m.group(1), inner))
    return blocks, images


def _pdf_matplotlib(html_path: Path, pdf_tmp: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    blocks, images = _html_to_blocks(html_path.read_text(encoding="utf-8"))
    blocks.append(
        (
            "p",
            "PDF rendered with matplotlib (Chromium was not available); "
            "report.html is the full-fidelity report.",
        )
    )
    a4 = (8.27, 11.69)
    with PdfPages(pdf_tmp) as pdf:
        fig = Figure(figsize=a4)
        y = 0.96
        for kind, text in blocks:
            size = {"h1": 14, "h2": 11.5}.get(kind, 8.5)
            width = 95 if kind not in ("h1", "h2") else 70
            lines = textwrap.wrap(("• " if kind == "li" else "") + text, width) or [""]
            need = (len(lines) * size * 1.45 + (8 if kind == "h2" else 2)) / (a4[1] * 72)
            if y - need < 0.04:
                pdf.savefig(fig)
                fig = Figure(figsize=a4)
                y = 0.96
            if kind == "h2":
                y -= 6 / (a4[1] * 72)
            fig.text(
                0.06,
                y,
                "\n".join(lines),
                fontsize=size,
                va="top",
                family="DejaVu Sans",
                weight="bold" if kind in ("h1", "h2") else "normal",
            )
            y -= need
        pdf.savefig(fig)
        for caption, rgb in images:
            fig = Figure(figsize=a4)
            ax = fig.add_axes((0.06, 0.08, 0.88, 0.84))
            ax.imshow(rgb)
            ax.set_axis_off()
            fig.text(0.5, 0.95, caption, ha="center", fontsize=11, weight="bold")
            pdf.savefig(fig)


def write_pdf(html_path: str | Path, pdf_path: str | Path) -> str:
    """Write ``pdf_path`` from report.html atomically; returns the renderer used
    ("chromium" or "matplotlib"), which the PDF itself also states."""
    html_path = Path(html_path)
    with atomic_path(pdf_path) as tmp:
        if find_chromium() is not None and _pdf_chromium(html_path, tmp):
            return "chromium"
        _pdf_matplotlib(html_path, tmp)
    return "matplotlib"
