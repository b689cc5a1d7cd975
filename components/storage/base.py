"""What every storage backend shares: the interface, its errors, and URI helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


class StorageError(Exception):
    """A storage operation failed; the message names the URI, and ``uri`` holds it."""

    def __init__(self, message: str, *, uri: str = ""):
        super().__init__(message)
        self.uri = uri

    def __reduce__(self):  # keep ``uri`` across pickling (the warm worker sends errors back)
        return (type(self), (str(self),), {"uri": self.uri})


def write_failure(uri: str, error: OSError) -> StorageError:
    """A failed write, naming the object and what the system said (a full disk, a permission)
    with the usual remedy; nothing was replaced."""
    hints = {28: " (the disk is full: free space, then run again)",
             13: " (permission denied: the run's user cannot write there)",
             30: " (a read-only file system)"}
    return StorageError(f"cannot write {uri}: {error.strerror or error}"
                        f"{hints.get(error.errno, '')}; the object was left as it was", uri=uri)


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The object does not exist."""


@dataclass(frozen=True)
class FileInfo:
    """An object found under a prefix: its full URI, its path relative to the prefix, its size."""

    uri: str
    relative_path: str
    size: int


class Storage(Protocol):
    """The operations every backend provides (see the module docstring)."""

    def read_bytes(self, uri: str) -> bytes: ...

    def open_file(self, uri: str, scratch: Path) -> BinaryIO: ...

    def read_with_token(self, uri: str) -> tuple[bytes | None, str | None]: ...

    def write_bytes(self, uri: str, data: bytes) -> None: ...

    def create_exclusive(self, uri: str, data: bytes) -> bool: ...

    def compare_and_swap(self, uri: str, data: bytes, expected_token: str | None) -> bool: ...

    def exists(self, uri: str) -> bool: ...

    def list_files(self, prefix: str) -> list[FileInfo]: ...


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a ``gs://`` URI with single slashes."""
    uri = base.rstrip("/")
    for part in parts:
        uri = f"{uri}/{part.strip('/')}"
    return uri


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def file_fingerprint(source: BinaryIO) -> dict:
    """An open file's ``size`` and hex ``sha256``, read a block at a time (never whole), then
    back at its start."""
    digest, size = hashlib.sha256(), 0
    source.seek(0)
    while block := source.read(1 << 20):
        digest.update(block)
        size += len(block)
    source.seek(0)
    return {"size": size, "sha256": digest.hexdigest()}
