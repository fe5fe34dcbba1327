"""Zip members checked before anything is read or extracted: no path may leave the archive's folder,
the entry count is bounded (read from the end record, before zipfile builds one object per entry),
and the total unpacked size is bounded (a zip bomb is refused, not unpacked)."""
from __future__ import annotations

import zipfile
from pathlib import PurePosixPath

from .limits import ENV, limits


def check_entry_count(path, name: str, error: type[Exception]) -> None:
    """Refuse a zip whose end-of-central-directory record declares more entries than the limit."""
    try:
        if hasattr(path, "seek"):
            endrec = zipfile._EndRecData(path)  # the stdlib's own parser of the end record
        else:
            with open(path, "rb") as fp:
                endrec = zipfile._EndRecData(fp)
    except (OSError, AttributeError):
        return  # zipfile reports an unreadable zip in its own words
    if endrec is not None:
        check_count(endrec[zipfile._ECD_ENTRIES_TOTAL], name, error)


def check_count(count: int, name: str, error: type[Exception]) -> None:
    cap = limits().zip_entries
    if count > cap:
        raise error(f"{name} declares {count:,} zip entries; the limit is {cap:,} entries per zip ({ENV['zip_entries']}).")


def safe_members(zf: zipfile.ZipFile, name: str, max_bytes: int, error: type[Exception]) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    check_count(len(members), name, error)  # the end record may understate the count
    for m in members:
        p = PurePosixPath(m.filename)
        if p.is_absolute() or ".." in p.parts or "\\" in m.filename:
            raise error(f"{name} contains a path outside its folder ({m.filename}); refusing to read it.")
    if sum(m.file_size for m in members) > max_bytes:
        raise error(f"{name} would unpack to more than {max_bytes / 2**30:g} GiB; refusing to read it.")
    return members


def open_checked(path, name: str, max_bytes: int, error: type[Exception]) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open a zip and check its members; the caller closes it (use it in a with-block)."""
    check_entry_count(path, name, error)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise error(f"{name} is not a valid zip file ({e}).") from None
    try:
        return zf, safe_members(zf, name, max_bytes, error)
    except error:
        zf.close()
        raise


LOCAL_HEADER = 30   # fixed part of a zip local file header (APPNOTE 4.3.7)


def stored_data_offset(fp, info: zipfile.ZipInfo) -> int | None:
    """The file offset of a member's bytes when they are stored as-is (not compressed, not encrypted), read from
    its local header (whose name and extra-field lengths may differ from the central directory's); else None.
    A stored member's bytes can be memory-mapped in place."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or info.compress_size != info.file_size:
        return None
    fp.seek(info.header_offset)
    head = fp.read(LOCAL_HEADER)
    if len(head) != LOCAL_HEADER or head[:4] != b"PK\x03\x04":
        return None
    name_len = int.from_bytes(head[26:28], "little")
    extra_len = int.from_bytes(head[28:30], "little")
    return info.header_offset + LOCAL_HEADER + name_len + extra_len
