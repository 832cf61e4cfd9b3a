"""The config reference (``docs/config.md``), generated from the config files themselves: ``train.yaml`` (every key
and its default, with its comment) and each group's options (what each option sets). ``python -m
pyro_bnn.app.config_reference`` writes it; a test asserts the page is what this prints."""

from __future__ import annotations

import sys
from pathlib import Path

from .schema import CONF_DIR

#: Where the page goes, from the repository's root.
PAGE = Path("docs") / "config.md"


def reference_text() -> str:
    """The page: ``train.yaml``, then every group's options, each file as it is."""
    lines = ["# Config reference", "",
             "Generated from `pyro_bnn/app/conf/` by `python -m pyro_bnn.app.config_reference` (a test checks that it "
             "is up to date). `train.yaml` holds every key and its default; a group option (`group=option`) sets what "
             "its file says; `python -m pyro_bnn.train --cfg job [overrides]` prints the config a command composes.",
             "", "## `train.yaml`", "", "```yaml", (CONF_DIR / "train.yaml").read_text().rstrip(), "```", ""]
    for group in sorted(path for path in CONF_DIR.iterdir() if path.is_dir()):
        lines += [f"## `{group.name}`", ""]
        for option in sorted(group.glob("*.yaml")):
            lines += [f"### `{group.name}={option.stem}`", "", "```yaml", option.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    """Write the page (into ``docs/config.md`` under the current dir, or the path given)."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE
    path.write_text(reference_text())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
