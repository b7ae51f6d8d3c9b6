"""Opening the files a coordinator names: regular files only, bounded in size, and, when one file names another
(a proposal's `document:`), inside the naming file's folder.

A proposal's document is stored and mailed to every delegate, so a path that escapes its folder
(`../../etc/passwd`, `/proc/self/environ`, a symlink out) would publish whatever it points at. Devices, FIFOs and
directories are refused too: a FIFO blocks the reader forever and a device never ends.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Pseudo-file systems: their "regular" files report size 0 and read as anything (the environment, memory).
_PSEUDO = (Path("/proc"), Path("/sys"), Path("/dev"))


class LocalFileError(ValueError):
    """A named file that may not be read; the message is one line and names the file."""


def size_text(size: int) -> str:
    """`5,242,881 bytes (5.2 MB)`: exact, so a file one byte over the limit does not read as equal to it."""
    return f"{size:,} bytes" + (f" ({size / 1_000_000:.1f} MB)" if size >= 1_000_000 else "")


def read_bounded(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file at `path`, refusing anything else or anything over `limit` bytes."""
    shown = _shown(path)
    if _under_pseudo(path):
        raise LocalFileError(f"{shown}: {what} is in {_under_pseudo(path)}, not a regular file")
    try:
        mode = os.stat(path).st_mode  # a socket cannot even be opened: say what it is
    except (OSError, ValueError):
        mode = None  # the open below says why
    if mode is not None and not stat.S_ISREG(mode):
        raise LocalFileError(f"{shown}: {what} is {_kind(mode)}, not a regular file")
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; fstat then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise LocalFileError(f"{shown}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise LocalFileError(f"{shown}: cannot open {what}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise LocalFileError(f"{shown}: {what} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise LocalFileError(f"{shown}: {what} is {size_text(info.st_size)}; the limit is {size_text(limit)}")
        chunks, left = [], limit + 1  # read to one byte past the limit: the size can change after fstat
        while left > 0 and (chunk := os.read(descriptor, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise LocalFileError(f"{shown}: {what} is over the limit of {size_text(limit)}")
    return data


def read_text(path: Path, limit: int, what: str = "file") -> str:
    """`read_bounded`, as UTF-8 text."""
    raw = read_bounded(path, limit, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LocalFileError(f"{_shown(path)}: cannot read {what} as UTF-8 text (byte {exc.start + 1})") from None


def confined(folder: Path, named: str, what: str = "file") -> Path:
    """The real path of `named` (as written in a file in `folder`), refused unless it stays inside `folder`."""
    if not named or "\x00" in named:
        raise LocalFileError(f"{what} {named!r}: not a file name")
    base = folder.resolve()
    try:
        real = (base / named).resolve(strict=True)  # symlinks followed: where the path really leads
    except FileNotFoundError:
        raise LocalFileError(f"{what} {named!r}: no such file in {_shown(base)}") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise LocalFileError(f"{what} {named!r}: cannot be followed: {exc}") from None
    if not real.is_relative_to(base) or real == base:
        raise LocalFileError(
            f"{what} {named!r}: leads to {_shown(real)}, outside {_shown(base)}; "
            "it must be a file in the proposal file's folder (or below it)"
        )
    return real


def _under_pseudo(path: Path) -> Path | None:
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return next((root for root in _PSEUDO if real.is_relative_to(root)), None)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def _shown(path: Path) -> str:
    return repr(str(path)) if not str(path).isprintable() else str(path)
