"""`dvc plots show` writes a page that renders without network access (issue 24): .dvc/config's
`plots.html_template` is .dvc/vega/offline.html, which inlines Vega, Vega-Lite and Vega-Embed (scripts/vendor_vega.py)
instead of DVC's script tags pointing at a CDN."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

from tests.e2e_util import ROOT, VENV_BIN

URL = re.compile(r"^\s*(https?:)?//", re.I)


CSS_URL = re.compile(r"@import\s+['\"]([^'\"]+)|url\(\s*['\"]?([^'\")]+)")


class Resources(HTMLParser):
    """Every URL the page would load: script, img and iframe sources, links, and CSS url()/@import in <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.inline_scripts: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "embed", "source") and a.get("src"):
            self.loaded.append(a["src"])
        if tag == "link" and a.get("href"):
            self.loaded.append(a["href"])
        self._tag = "" if a.get("src") else tag

    def handle_endtag(self, tag):
        self._tag = ""

    def handle_data(self, data):
        if self._tag == "script":
            self.inline_scripts.append(data)
        elif self._tag == "style":
            self.loaded += [m for pair in CSS_URL.findall(data) for m in pair if m]


def test_dvc_plots_show_page_loads_nothing_from_the_network(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    for part in ("config", "plots", "vega"):
        src = ROOT / ".dvc" / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, repo / ".dvc" / part)
    shutil.copy2(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(ROOT / "results" / "plots", repo / "results" / "plots")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    out = subprocess.run([str(VENV_BIN / "dvc"), "plots", "show", "-o", "page"], cwd=repo, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    html = (repo / "page" / "index.html").read_text()
    page = Resources()
    page.feed(html)
    external = [u for u in page.loaded if URL.match(u)]
    assert not external, external
    assert "cdn.jsdelivr.net" not in html
    # the libraries are in the page itself, and every declared plot is drawn by them
    scripts = "\n".join(page.inline_scripts)
    assert "vega@5.20.2" in html and "vega-lite@5.2.0" in html and "vega-embed@6.18.2" in html
    assert "vegaEmbed=" in scripts.replace(" ", "") or ".vegaEmbed=t(" in scripts
    n_vega = sum(1 for line in (ROOT / "dvc.yaml").read_text().splitlines() if "template:" in line and ".csv" in line)
    assert html.count("vegaEmbed('#") == n_vega > 0
    images = [u for u in page.loaded if u.endswith(".png")]
    assert images and all((repo / "page" / u).is_file() for u in images), images
