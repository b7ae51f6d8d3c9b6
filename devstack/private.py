"""The dev data dir is private to its owner: keys, tokens, databases, logs and the mailbox (every link) in it.

Everything the stack writes there is made with mode 0600 (directories 0700): the process's umask is set
before the first file is made, so SQLite's files, the Maildir, the logs and the Temporal dev server's files
(a child inherits the umask) all follow, and whatever an earlier version left readable is tightened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private(data_dir: Path) -> int:
    """Set the owner-only umask, create `data_dir` 0700 and tighten what is in it; returns the previous umask."""
    previous = os.umask(OWNER_ONLY_UMASK)
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(data_dir)
    return previous


def tighten(data_dir: Path) -> None:
    """Modes 0600 for files and 0700 for directories under `data_dir` (symbolic links are left alone)."""
    os.chmod(data_dir, DIR_MODE)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            _chmod(Path(root) / name, DIR_MODE)
        for name in files:
            _chmod(Path(root) / name, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if not stat.S_ISLNK(path.lstat().st_mode):
            os.chmod(path, mode)
    except FileNotFoundError:
        pass  # removed while we walked (a SQLite journal, a message moved from new/ to cur/)
