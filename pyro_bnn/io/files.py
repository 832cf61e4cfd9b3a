"""Files written atomically (:func:`replacing`), and pyro_bnn's torch files: a format tag checked on reading, read with
``weights_only`` (loading never executes code). Torch is imported by the calls that save or read a torch file: the
app's entry point writes a refused run's ``status.json`` without it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator


@contextmanager
def replacing(path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; it replaces ``path`` once the block succeeds.

    The temporary file's name is made unique when it is created (:func:`tempfile.mkstemp`), so that two processes
    writing the same file never write into each other's. A crash or an error inside the block leaves ``path`` as
    it was (and no temporary file behind)::

        with replacing("metrics.json") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: pass the path of a file in it (e.g. {path / 'posterior.pt'})")
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_file(path, blob: Dict[str, Any]) -> None:
    """:func:`torch.save` ``blob`` to ``path`` atomically."""
    import torch

    with replacing(path) as tmp:
        torch.save(blob, tmp)


def read_file(path, expected_format: str, what: str, device="cpu") -> Dict[str, Any]:
    """Read a dict written by :func:`save_file` whose ``format`` is ``expected_format`` (``weights_only``).

    :param str what: the kind of file, for the error messages (e.g. ``"saved posterior"``).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}: pass a file a pyro_bnn run or save call wrote (a training "
                                "run writes <run dir>/posterior.pt)")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        first_line = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise ValueError(f"{path} is not a readable pyro_bnn {what} ({type(err).__name__}: {first_line})") from None
    if not isinstance(blob, dict) or blob.get("format") != expected_format:
        found = blob.get("format") if isinstance(blob, dict) else None
        if isinstance(found, str) and found.split("/")[0] == expected_format.split("/")[0]:
            raise ValueError(f"{path} is a {what} of format {found!r}, written by an older pyro_bnn whose "
                             f"guide stored its scales differently; this version reads {expected_format!r}: "
                             "train the run again")
        raise ValueError(f"{path} is not a pyro_bnn {what} (expected format {expected_format!r})")
    return blob


