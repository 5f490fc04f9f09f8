"""Writes .dvc/vega/offline.html: the page `dvc plots show|diff` fills (`plots.html_template` in .dvc/config), with
Vega, Vega-Lite and Vega-Embed inlined from their npm packages, so that it renders where no CDN can be reached
(an offline cluster node). DVC's own page loads the three scripts from cdn.jsdelivr.net; a template without the
`{scripts}` placeholder gets none of its script tags.

    python scripts/vendor_vega.py [DIR]   # DIR: where `npm pack` leaves the tarballs (default: a temporary folder)

The versions are the ones dvc-render's page asks for (dvc_render/vega.py), whose specs they are tested with.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".dvc" / "vega" / "offline.html"
PACKAGES = (("vega", "5.20.2", "build/vega.min.js"), ("vega-lite", "5.2.0", "build/vega-lite.min.js"),
            ("vega-embed", "6.18.2", "build/vega-embed.min.js"))
PAGE = """<!DOCTYPE html>
<!-- `dvc plots show` page with its scripts inlined: written by scripts/vendor_vega.py, do not edit. -->
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{inlined}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def member(tgz: Path, name: str) -> str:
    with tarfile.open(tgz) as tar:
        f = tar.extractfile(f"package/{name}")
        assert f is not None, f"{tgz}: no package/{name}"
        return f.read().decode()


def script(tgz: Path, package: str, version: str, path: str) -> str:
    code = member(tgz, path)
    for placeholder in ("{scripts}", "{plot_divs}", "{refresh_tag}", "</script"):
        if placeholder in code:  # the page is filled by str.replace, and an inline script ends at </script
            raise SystemExit(f"{package}@{version} {path} contains {placeholder!r}: it cannot be inlined as is")
    licence = member(tgz, "LICENSE").strip().replace("*/", "* /")
    return (f"    <!-- {package}@{version} ({path} of the npm package), licence: -->\n"
            f"    <script>/*\n{licence}\n*/\n{code}\n</script>")


def main() -> None:
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="vega-"))
    parts = []
    for package, version, path in PACKAGES:
        tgz = where / f"{package}-{version}.tgz"
        if not tgz.exists():
            subprocess.run(["npm", "pack", "--silent", f"{package}@{version}"], cwd=where, check=True)
        parts.append(script(tgz, package, version, path))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(PAGE.replace("{inlined}", "\n".join(parts)))
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
