"""docs/elbo.md shows what `python -m pyro_bnn.explain` prints."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_elbo_doc_numbers_are_the_explain_command_output():
    doc = (ROOT / "docs" / "elbo.md").read_text()
    block = re.search(r"then prints:\n\n```\n(.*?)\n```", doc, re.S).group(1)
    proc = subprocess.run([sys.executable, "-m", "pyro_bnn.explain"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert block.strip() == proc.stdout.strip()
    for number in ["8671.88", "0.0973", "6.0347", "6.1320", "11.23", "173.02", "7705.58", "693.86"]:
        assert number in block
