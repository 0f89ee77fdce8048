"""Uploaded bytes on disk, under ``<data_dir>/uploads``.

Bytes arrive in ``tmp/`` and are moved to ``blobs/<key>`` (same file system, so the move
is atomic) only once the transaction that records them has committed. A blob's key is
chosen by us, never taken from the client, so a file name cannot escape the folder.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[0-9a-z_]{1,64}$")


class Blobs:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "uploads"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir = self.root / "blobs"

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.blob_dir / key

    def new_tmp_dir(self) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir

    def place(self, tmp: Path, key: str) -> None:
        """Move a received file into place under ``key`` (call after commit)."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, self.path(key))

    def remove(self, keys: list[str]) -> None:
        """Remove blobs (call after commit); a blob already gone is not an error."""
        for key in keys:
            try:
                self.path(key).unlink()
            except FileNotFoundError:
                log.warning("blob %s was already gone", key)
