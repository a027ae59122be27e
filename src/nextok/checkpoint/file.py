"""What a file given as a checkpoint is not, in one line, before ``torch.load`` sees it.

``torch.save`` writes a zip archive whose directory (the "end of central directory" record) sits
at its very end: a save or copy cut short loses it, and a text file is no zip at all. Without
this check ``torch.load`` answers with ``KeyError: 101`` or a 20-line traceback from its zip
reader. Plain Python: usable before torch is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"
_EOCD = b"PK\x05\x06"  # end of central directory record: 22 bytes + a comment of <= 65535
_LEGACY = b"\x80"  # torch.save(_use_new_zipfile_serialization=False): a pickle, protocol >= 2


def checkpoint_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file (``None``: it may be one)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - (22 + 65535)))
            tail = f.read()
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    if head.startswith(_LEGACY):
        return None
    if not head.startswith(ZIP_MAGIC):
        kind = "a text file" if _is_text(head) else f"it starts with {head[:8]!r}"
        return f"not a PyTorch checkpoint (zip archive expected; {kind})"
    end = tail.rfind(_EOCD)
    if end < 0 or len(tail) - end < 22:
        return (
            f"truncated: {size} bytes and no zip directory at its end (a save or copy cut "
            "short); use another checkpoint"
        )
    record = tail[end : end + 22]
    cd_size = int.from_bytes(record[12:16], "little")
    cd_offset = int.from_bytes(record[16:20], "little")
    expected = cd_offset + cd_size + 22 + int.from_bytes(record[20:22], "little")
    if cd_offset != 0xFFFFFFFF and expected > size:  # zip64 keeps its offsets elsewhere
        return f"truncated: {size} bytes of {expected}; use another checkpoint"
    return None


def _is_text(head: bytes) -> bool:
    return all(c >= 32 or c in b"\t\n\r\f" for c in head)
