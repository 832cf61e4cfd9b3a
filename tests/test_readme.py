"""Every command of the README is run: its set-up commands by CI (``.ci/run``), its experiment commands and its
library example here; the README fits a screen or two, and its links lead to pages that exist; the documentation
site's config reference is the config files'."""

import re
import subprocess
import sys

import pytest

from helpers import ROOT
from pyro_bnn.app.config_reference import reference_text

README = (ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def commands(language="bash"):
    """Each command line of the README's ``language`` blocks, without its comment."""
    return [line.split("  #")[0].strip() for block in blocks(language) for line in block.splitlines() if line.strip()]


def test_the_readme_is_short_and_its_links_lead_to_files_that_exist():
    assert len(README.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links and all((ROOT / link).exists() for link in links), [link for link in links if not (ROOT / link).exists()]


def test_ci_runs_the_readmes_set_up_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands()[:2]:
        assert command in ci.splitlines(), command


def test_the_config_reference_is_the_config_files():
    assert (ROOT / "docs" / "config.md").read_text() == reference_text(), (
        "docs/config.md is out of date: python -m pyro_bnn.app.config_reference")


@pytest.mark.slow
def test_every_experiment_command_and_the_library_example_of_the_readme_run(tmp_path):
    experiments = [command for command in commands() if command.startswith("python -m pyro_bnn")]
    assert len(experiments) == 4
    for command in experiments:
        if "<a run dir>" in command:
            run_dir = next(path.parent for path in sorted((tmp_path / "outputs").glob("*/*/metrics.json")))
            command = command.replace("<a run dir>", str(run_dir))
        proc = subprocess.run([sys.executable, *command.split()[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
    assert len(list((tmp_path / "outputs").glob("*/*/metrics.json"))) == 2  # the default run and the debug run
    assert len(list((tmp_path / "outputs" / "multirun").glob("*/*/*/metrics.json"))) == 2  # the sweep's two jobs
    (example,) = blocks("python")
    proc = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'accuracy'" in proc.stdout
