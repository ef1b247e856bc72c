"""Render pages of the documentation site in headless Chromium and check they are not blank.

    python scripts/screenshot_docs.py                    # build the site, shoot docs/screenshots/*.png
    python scripts/screenshot_docs.py --site site --out /tmp/shots   # an already built site

The site (``mkdocs build --strict`` into a temporary folder, unless ``--site`` names a built
one) is served on a local port, and each page below is loaded by ``chromium --headless``
twice: once to print its DOM, which must hold the page's expected heading and no error
page's text, and once to write a PNG screenshot, which must not be blank (a screenshot of
a page that failed to load or render is a single colour, or nearly). Exit status 1 on any
failure, naming the page; 0 with a message saying so when Chromium is absent and
``--allow-missing`` is given (CI without Chromium), 1 without it.

Needs Chromium (Debian: ``apt-get install chromium``) and Pillow (a dependency of
matplotlib, in the ``docs`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ERROR_TEXT = ("404 - Not found", "ERR_", "This site can’t be reached", "Traceback (most recent call last)")
MIN_INK = 0.02  # at least 2% of the pixels differ from the background colour
MIN_COLOURS = 16  # a rendered page has text anti-aliasing, code colours, a header


@dataclass(frozen=True)
class Page:
    name: str  # the PNG's file name, without .png
    path: str  # URL path under the site's root
    expect: tuple[str, ...]  # text the DOM must contain


PAGES = (
    Page("home", "", ("Keras 3's probabilistic losses", "Two commands")),
    Page("guide-pytorch", "guides/pytorch/", ("PyTorch", "torch.compile")),
    Page("api-probloss", "reference/probloss/", ("BinaryCrossentropy", "sparse_categorical_crossentropy")),
)


def find_browser() -> str | None:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    return None


def build_site(dest: Path) -> None:
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(dest)],
                   cwd=ROOT, check=True)


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
             "--no-first-run", "--virtual-time-budget=5000"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


def ink(png: Path) -> tuple[float, int]:
    """The share of pixels unlike the most common colour, and the number of distinct colours."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
    total = sum(count for count, _ in colours)
    background = max(count for count, _ in colours) if colours else 0
    return (1 - background / total if total else 0.0), len(colours)


def check_page(browser: str, base: str, page: Page, out: Path, width: int, height: int) -> list[str]:
    """Problems found on ``page`` (empty when it rendered); writes ``out/<name>.png``."""
    url = base + page.path
    problems = []
    dom = _chromium(browser, "--dump-dom", url)
    text = dom.stdout
    if dom.returncode != 0 or not text.strip():
        return [f"{page.name}: chromium --dump-dom failed ({dom.returncode}): {dom.stderr.strip()[-300:]}"]
    problems += [f"{page.name}: the page does not contain {want!r}" for want in page.expect if want not in text]
    problems += [f"{page.name}: the page shows an error ({bad!r})" for bad in ERROR_TEXT if bad in text]
    png = out / f"{page.name}.png"
    shot = _chromium(browser, f"--screenshot={png}", f"--window-size={width},{height}", url)
    if shot.returncode != 0 or not png.is_file():
        return [*problems, f"{page.name}: no screenshot ({shot.returncode}): {shot.stderr.strip()[-300:]}"]
    share, colours = ink(png)
    if share < MIN_INK or colours < MIN_COLOURS:
        problems.append(f"{page.name}: blank screenshot ({share:.1%} ink, {colours} colours)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="a built site (default: build one with mkdocs)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNG files go")
    parser.add_argument("--allow-missing", action="store_true", help="exit 0, saying so, when Chromium is absent")
    parser.add_argument("--size", default="1280x900", help="window size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        verdict = "skipped" if args.allow_missing else "failed"
        print(f"screenshot check {verdict}: no Chromium found ({', '.join(BROWSERS)})")
        return 0 if args.allow_missing else 1
    width, height = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            site = Path(tmp) / "site"
            build_site(site)
        problems = []
        with serve(site) as base:
            for page in PAGES:
                found = check_page(browser, base, page, args.out, width, height)
                problems += found
                print(f"{page.name}: {'FAILED' if found else 'ok'} ({base}{page.path} -> {args.out / page.name}.png)")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
