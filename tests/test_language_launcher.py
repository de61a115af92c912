"""Every language we install a kernelspec for is in JupyterLab's launcher, logo and all (issue 18).

``remote-kernel install --all --prefix TMP`` (the real command) writes one spec per template in
kernelspecs/; ``jupyter kernelspec list`` (the real command, JUPYTER_PATH pointing there) finds
each of them there; a real JupyterLab on that JUPYTER_PATH shows a launcher card for each in
headless Chromium, whose logo image is the template's own file and really decoded
(``naturalWidth > 0``, not JupyterLab's letter fallback). The picture is saved as
artifacts/lab-launcher-languages.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from browser import Chromium, JupyterLab, require_chromium, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "kernelspecs"
# the languages issue 18 names; the templates may add more, never fewer
LANGUAGES = {"remote-python", "remote-c", "remote-cpp", "remote-lua", "remote-nodejs",
             "remote-r", "remote-julia"}
LOGOS = ("logo-32x32.png", "logo-64x64.png")
CATEGORIES = ("Notebook", "Console")  # the launcher sections with a card per kernelspec


def templates() -> dict[str, dict]:
    """kernelspec name → the template's kernel.json."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(TEMPLATES.glob("*/kernel.json"))}


def remote_kernel_cli() -> list[str]:
    """The ``remote-kernel`` console script of this environment (else ``python -m remote_kernel``)."""
    script = Path(sys.executable).with_name("remote-kernel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "remote_kernel"]


def test_every_template_has_launcher_logos():
    specs = templates()
    assert LANGUAGES <= set(specs), sorted(LANGUAGES - set(specs))
    from PIL import Image

    for name in specs:
        for logo in LOGOS:
            path = TEMPLATES / name / logo
            assert path.is_file(), f"{name} has no {logo}"
            size = int(logo.split("-")[1].split("x")[0])
            with Image.open(path) as im:
                assert im.format == "PNG" and im.size == (size, size), (name, logo, im.format, im.size)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``remote-kernel install --all --prefix TMP``; returns (JUPYTER_PATH entry, its output)."""
    prefix = tmp_path_factory.mktemp("all-specs")
    env = dict(os.environ)
    env.pop("JUPYTER_PATH", None)
    proc = subprocess.run([*remote_kernel_cli(), "install", "--all", "--prefix", str(prefix)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" not in proc.stderr, proc.stderr
    kernels = prefix / "share" / "jupyter" / "kernels"
    for name in templates():
        assert f"installed kernelspec {name} in {kernels / name}" in proc.stdout, proc.stdout
    return prefix / "share" / "jupyter", proc.stdout


def jupyter_path_env(spec_root: Path) -> dict:
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(spec_root), os.environ.get("JUPYTER_PATH")]))
    return env


def test_install_all_copies_the_logos(installed):
    spec_root, _ = installed
    for name in templates():
        for logo in LOGOS:
            copy = spec_root / "kernels" / name / logo
            assert copy.is_file(), f"install --all did not copy {logo} of {name}"
            assert copy.read_bytes() == (TEMPLATES / name / logo).read_bytes()


def test_jupyter_kernelspec_list_finds_every_language(installed):
    spec_root, _ = installed
    env = jupyter_path_env(spec_root)
    jupyter = Path(sys.executable).with_name("jupyter")
    base = [str(jupyter)] if jupyter.exists() else [sys.executable, "-m", "jupyter"]
    listing = subprocess.run([*base, "kernelspec", "list"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    print(listing.stdout)  # shown with -s: the real listing
    rows = dict(line.split(None, 1) for line in listing.stdout.splitlines()[1:] if line.strip())
    found = subprocess.run([*base, "kernelspec", "list", "--json"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    specs = json.loads(found.stdout)["kernelspecs"]
    for name, template in templates().items():
        where = spec_root / "kernels" / name
        assert name in rows, f"{name} missing from `jupyter kernelspec list`:\n{listing.stdout}"
        # Jupyter uses the installed copy (JUPYTER_PATH comes first), not another of that name
        assert os.path.realpath(rows[name].strip()) == os.path.realpath(where), rows[name]
        assert specs[name]["spec"]["display_name"] == template["display_name"]
        assert specs[name]["spec"]["language"] == template["language"]


def test_launcher_shows_every_language_with_its_logo(installed, tmp_path):
    require_chromium()
    spec_root, _ = installed
    specs = templates()
    env = {"JUPYTER_PATH": jupyter_path_env(spec_root)["JUPYTER_PATH"]}
    with JupyterLab(tmp_path, env=env) as lab, Chromium() as chromium:
        # the server serves each installed logo, byte for byte the template's
        served = lab.api("GET", "api/kernelspecs")["kernelspecs"]
        for name in specs:
            assert set(served[name]["resources"]) >= {"logo-32x32", "logo-64x64"}, served[name]
            with urllib.request.urlopen(lab.url(f"kernelspecs/{name}/logo-64x64.png"), timeout=30) as resp:
                assert resp.read() == (TEMPLATES / name / "logo-64x64.png").read_bytes()

        page = chromium.new_page()
        try:
            page.goto(lab.url("lab/workspaces/languages?reset"), timeout=90_000)
            cards = {(category, name): page.locator(f'.jp-LauncherCard[data-category="{category}"]'
                                                    f'[title="{spec["display_name"]}"]')
                     for category in CATEGORIES for name, spec in specs.items()}
            for card in cards.values():
                card.wait_for(state="visible", timeout=90_000)
            # every card's logo has loaded (an event the page records: img.complete)
            page.wait_for_function(
                """([categories, titles]) => categories.every(c => titles.every(t => {
                    const img = document.querySelector(
                        `.jp-LauncherCard[data-category="${c}"][title="${t}"] .jp-LauncherCard-icon img`);
                    return img && img.complete;
                }))""",
                arg=[list(CATEGORIES), [spec["display_name"] for spec in specs.values()]], timeout=60_000)
            report = {}
            for (category, name), card in cards.items():
                what = f"{category} card of {name}"
                assert card.count() == 1, f"{card.count()} {what}s"
                assert card.locator(".jp-LauncherCard-noKernelIcon").count() == 0, f"{what} shows no logo"
                img = card.locator(".jp-LauncherCard-icon img")
                assert img.count() == 1, f"{what}: no logo image"
                assert img.is_visible(), f"{what}: logo not visible"
                src, width, height = img.evaluate("i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]")
                assert f"kernelspecs/{name}/logo-" in src, (what, src)
                assert width > 0 and height > 0, f"{what}: logo did not decode ({src})"
                box = card.bounding_box()
                assert box and box["width"] > 0 and box["height"] > 0, (what, box)
                report[f"{category}/{name}"] = f"{card.locator('.jp-LauncherCard-label').inner_text()!r} logo {width}x{height}"
            print(json.dumps(report, indent=1))
            shot = screenshot(page, "lab-launcher-languages")
            assert shot.stat().st_size > 10_000
            errors = [line for line in chromium.console if line.startswith("pageerror")]
            assert not errors, errors
        finally:
            page.close()
