"""`aekit demo` (what `make demo` runs), on a smaller budget, and the docs that must stay true to the code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from aekit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_trains_reports_and_reuses(tmp_path, capsys, data_dir):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--max-train-samples", "256"]) == 0
    stdout = capsys.readouterr().out
    assert f"run folder: {out}" in stdout and "elbo" in stdout and f"report: {out / 'report.html'}" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["name"] == "vae" and cfg["model"]["config"]["latent_dim"] == 2
    assert cfg["model"]["config"]["hidden_dims"] == [512, 256]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "http://" not in html and "https://" not in html
    assert html.index("alt='manifold'") < html.index("alt='latent'") < html.index("alt='reconstruct'")
    # every aekit command among the printed next steps parses (a renamed flag would fail here)
    from aekit.cli import build_parser

    steps = [line.split("   ")[0].split() for line in stdout.split("next steps:\n")[1].splitlines()]
    assert len(steps) >= 4
    for cmd in (s for s in steps if s[0] == "aekit"):
        build_parser().parse_args(cmd[1:])
    before = (out / "model.safetensors").read_bytes()
    assert main(["demo", "--out", str(out)]) == 0  # second call re-uses the run
    assert "re-using it" in capsys.readouterr().out
    assert (out / "model.safetensors").read_bytes() == before


def test_cli_reference_is_current(tmp_path):
    """docs/cli.md is generated from the parser: regenerate with scripts/make_cli_docs.py when this fails."""
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_cli_docs.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_readme_names_every_model_and_the_two_commands():
    from aekit.registry import list_models

    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for name in list_models():
        assert f"`{name}`" in readme, name
    # every `aekit X` command the README shows exists
    from aekit.cli import build_parser
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in set(re.findall(r"^aekit ([a-z-]+)", readme, re.M)):
        assert cmd in sub.choices, cmd
