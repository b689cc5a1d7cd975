"""One small storage interface for data, models and pointers.

Stages never look at the scheme of a URI themselves: they call :func:`storage_for` and use the
returned object. A local folder is served by :class:`LocalStorage`, ``gs://`` by
:class:`components.storage.gcs.GCSStorage`: two implementations of the same operations.

The operations are the ones a registry needs to stay consistent while runs overlap:

- ``read_bytes`` / ``read_with_token``: read an object, optionally with a token that identifies
  the exact content read (a generation number on GCS, a content hash on local disk);
- ``open_file``: an object as a file open for reading, for sources too large to hold in memory
  (the file itself on local disk; on GCS a download into a scratch folder);
- ``write_bytes``: replace an object atomically (readers see the old or the new bytes, never a mix);
- ``create_exclusive``: create an object only if it does not exist (used to claim version numbers);
- ``compare_and_swap``: replace an object only if it still holds the content read earlier;
- ``list_files``: every object under a prefix, with size.
"""

from __future__ import annotations

from pathlib import Path

from components.storage.base import (
    FileInfo,
    ObjectNotFoundError,
    Storage,
    StorageError,
    file_fingerprint,
    join_uri,
    sha256_bytes,
)
from components.storage.local import LocalStorage

__all__ = ["FileInfo", "LocalStorage", "ObjectNotFoundError", "Storage", "StorageError",
           "copy_folder", "file_fingerprint", "join_uri", "sha256_bytes", "storage_for"]


def storage_for(uri: str) -> Storage:
    """Return the storage backend that serves ``uri``: GCS for ``gs://``, else the local disk."""
    if uri.startswith("gs://"):
        from components.storage.gcs import GCSStorage  # google-cloud-storage loads only when needed

        return GCSStorage()
    return LocalStorage()


def copy_folder(folder: str | Path, target_uri: str) -> int:
    """Copy every file under ``folder`` to ``target_uri`` (any storage); returns the count."""
    storage, count = storage_for(target_uri), 0
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            storage.write_bytes(join_uri(target_uri, path.relative_to(folder).as_posix()),
                                path.read_bytes())
            count += 1
    return count
