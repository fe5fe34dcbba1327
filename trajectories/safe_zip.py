"""Zip members checked before anything is read or extracted: no path may leave the archive's folder,
and the total unpacked size is bounded (a zip bomb is refused, not unpacked)."""
from __future__ import annotations

import zipfile
from pathlib import PurePosixPath


def safe_members(zf: zipfile.ZipFile, name: str, max_bytes: int, error: type[Exception]) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for m in members:
        p = PurePosixPath(m.filename)
        if p.is_absolute() or ".." in p.parts or "\\" in m.filename:
            raise error(f"{name} contains a path outside its folder ({m.filename}); refusing to read it.")
    if sum(m.file_size for m in members) > max_bytes:
        raise error(f"{name} would unpack to more than {max_bytes / 2**30:g} GiB; refusing to read it.")
    return members


def open_checked(path, name: str, max_bytes: int, error: type[Exception]) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open a zip and check its members; the caller closes it (use it in a with-block)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise error(f"{name} is not a valid zip file ({e}).") from None
    try:
        return zf, safe_members(zf, name, max_bytes, error)
    except error:
        zf.close()
        raise
