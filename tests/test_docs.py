"""docs/elbo.md shows what `python -m pyro_bnn.app.explain` prints."""

import re

import pytest

from helpers import ROOT, cli


@pytest.mark.slow
def test_elbo_doc_numbers_are_the_explain_command_output():
    doc = (ROOT / "docs" / "elbo.md").read_text()
    block = re.search(r"then prints:\n\n```\n(.*?)\n```", doc, re.S).group(1)
    proc = cli("pyro_bnn.app.explain")
    assert block.strip() == proc.stdout.strip()
    for number in ["8672.76", "0.0968", "6.0353", "6.1321", "22.45", "172.99", "7706.48", "693.87"]:
        assert number in block
