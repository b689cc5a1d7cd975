"""Storage on the local file system: atomic replace by rename, compare-and-swap under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from components.storage.base import FileInfo, ObjectNotFoundError, sha256_bytes, write_failure


class LocalStorage:
    """Storage on the local file system (paths, or ``file://`` URIs).

    Writes go to a temporary file in the same folder, are flushed to disk and renamed over the
    target, so a crash leaves either the old or the new file, never a partial one.
    Compare-and-swap holds an exclusive ``fcntl`` lock on a sibling ``.lock`` file while it compares
    and renames, so two processes can never both win.
    """

    @staticmethod
    def _path(uri: str) -> Path:
        return Path(uri.removeprefix("file://"))

    def read_bytes(self, uri: str) -> bytes:
        try:
            return self._path(uri).read_bytes()
        except FileNotFoundError as error:
            raise ObjectNotFoundError(f"{uri} does not exist", uri=uri) from error

    def open_file(self, uri: str, scratch: Path) -> BinaryIO:
        """The file itself, open for reading (``scratch`` is for backends that must copy)."""
        try:
            return self._path(uri).open("rb")
        except FileNotFoundError as error:
            raise ObjectNotFoundError(f"{uri} does not exist", uri=uri) from error

    def read_with_token(self, uri: str) -> tuple[bytes | None, str | None]:
        try:
            data = self._path(uri).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, sha256_bytes(data)

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = self._path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                            suffix=".tmp")
        except OSError as error:
            raise write_failure(uri, error) from error
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            if isinstance(error, OSError):
                raise write_failure(uri, error) from error
            raise

    def create_exclusive(self, uri: str, data: bytes) -> bool:
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def compare_and_swap(self, uri: str, data: bytes, expected_token: str | None) -> bool:
        path = self._path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(f".{path.name}.lock")
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                _, current_token = self.read_with_token(uri)
                if current_token != expected_token:
                    return False
                self.write_bytes(uri, data)
                return True
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def list_files(self, prefix: str) -> list[FileInfo]:
        root = self._path(prefix)
        if root.is_file():
            return [FileInfo(uri=str(root), relative_path=root.name, size=root.stat().st_size)]
        if not root.is_dir():
            raise ObjectNotFoundError(f"{prefix} is neither a file nor a folder", uri=prefix)
        found = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            # Hidden files are temporaries or locks of an unfinished write: never data.
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                found.append(FileInfo(str(path), relative.as_posix(), path.stat().st_size))
        return found
