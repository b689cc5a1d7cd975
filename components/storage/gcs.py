"""The ``gs://`` backend of :mod:`components.storage`, on ``google-cloud-storage``.

Credentials come from the environment only: Application Default Credentials (a user's
``gcloud auth application-default login``, a service account on GKE through Workload Identity).
With ``STORAGE_EMULATOR_HOST`` set, the client talks to that emulator instead.

- Every object write is whole: GCS makes an upload visible only when complete.
- ``create_exclusive`` and ``compare_and_swap`` are uploads with an ``ifGenerationMatch``
  precondition (0 = must not exist; else the generation read earlier): GCS refuses a stale one
  with 412, so two runs can never both win.
- Transient errors (429, 5xx, dropped connections) are retried with exponential backoff up to a
  deadline (``RETRAIN_GCS_RETRY_SECONDS``, default 120); a conditional upload is safe to retry
  because its precondition makes it idempotent. A 412 on a retry is checked against the
  object: if it now holds exactly our bytes, the lost answer was our own success.
- Permanent errors (403, 404) fail at once with the bucket and object named.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from components.storage.base import FileInfo, ObjectNotFoundError, StorageError

RETRY_SECONDS_ENV = "RETRAIN_GCS_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0


def split_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("gs://"):
        raise StorageError(f"{uri} is not a gs:// URI", uri=uri)
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise StorageError(f"{uri} names no bucket", uri=uri)
    return bucket, name.strip("/")


@functools.cache
def _client():
    from google.cloud import storage

    # Under an emulator no credentials exist; the project only labels requests there.
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or (
        "local-emulator" if os.environ.get("STORAGE_EMULATOR_HOST") else None)
    return storage.Client(project=project)


def _retry(on_error=None):
    """google-cloud-storage's retry policy (429, 5xx, connection errors) with our deadline."""
    from google.api_core.retry import Retry
    from google.cloud.storage.retry import DEFAULT_RETRY

    seconds = float(os.environ.get(RETRY_SECONDS_ENV, DEFAULT_RETRY_SECONDS))
    return Retry(predicate=DEFAULT_RETRY._predicate, initial=0.25, maximum=8.0,
                 multiplier=2.0, timeout=seconds, on_error=on_error)


class GCSStorage:
    """Storage on Google Cloud Storage (see the module docstring)."""

    def __init__(self, client=None):
        self._given_client = client

    @property
    def client(self):
        return self._given_client or _client()

    def _blob(self, uri: str):
        bucket, name = split_gs_uri(uri)
        if not name:
            raise StorageError(f"{uri} names a bucket, not an object", uri=uri)
        return self.client.bucket(bucket).blob(name)

    def _call(self, uri: str, action: str, function):
        """Run one GCS call, turning its errors into messages that name the object."""
        from google.api_core import exceptions

        try:
            return function()
        except exceptions.NotFound as error:
            raise ObjectNotFoundError(
                f"{uri}: not found (404) while trying to {action}; check the bucket and object "
                "name", uri=uri) from error
        except exceptions.Forbidden as error:
            raise StorageError(
                f"{uri}: permission denied (403) while trying to {action}; the credentials in "
                "this environment cannot access the bucket", uri=uri) from error
        except exceptions.RetryError as error:
            raise StorageError(
                f"{uri}: GCS did not answer while trying to {action} (retried with backoff for "
                f"{_retry().timeout:g} s; last error: {error.cause})", uri=uri) from error
        except exceptions.GoogleAPICallError as error:
            raise StorageError(f"{uri}: {action} failed: {error}", uri=uri) from error
        except (ConnectionError, OSError) as error:
            raise StorageError(f"{uri}: GCS unreachable while trying to {action}: {error}", uri=uri) \
                from error

    def read_bytes(self, uri: str) -> bytes:
        blob = self._blob(uri)
        return self._call(uri, "read", lambda: blob.download_as_bytes(retry=_retry()))

    def open_file(self, uri: str, scratch: Path) -> BinaryIO:
        """The object downloaded into an unnamed file in ``scratch`` (gone when closed), open
        at its start: streamed to disk, never whole in memory, a retried download resuming
        where it stopped (checksum-verified by the client library)."""
        blob = self._blob(uri)
        target = tempfile.TemporaryFile(dir=scratch)
        try:
            self._call(uri, "read", lambda: blob.download_to_file(target, retry=_retry()))
        except BaseException:
            target.close()
            raise
        target.seek(0)
        return target

    def read_with_token(self, uri: str) -> tuple[bytes | None, str | None]:
        from google.api_core import exceptions

        bucket, name = split_gs_uri(uri)

        def read():
            found = self.client.bucket(bucket).get_blob(name, retry=_retry())
            if found is None:
                return None, None
            generation = found.generation
            try:  # the bytes of exactly the generation whose number we return
                data = self.client.bucket(bucket).blob(name).download_as_bytes(
                    if_generation_match=generation, retry=_retry())
            except (exceptions.PreconditionFailed, exceptions.NotFound):
                return read()  # replaced or deleted between the two calls: read again
            return data, str(generation)

        return self._call(uri, "read", read)

    def write_bytes(self, uri: str, data: bytes) -> None:
        blob = self._blob(uri)
        # Whole-object replace with the same bytes is idempotent, so it is safe to retry.
        self._call(uri, "write", lambda: blob.upload_from_string(data, retry=_retry()))

    def _conditional_write(self, uri: str, data: bytes, generation: int, action: str) -> bool:
        from google.api_core import exceptions

        blob = self._blob(uri)

        retried = []

        def write():
            try:
                blob.upload_from_string(data, if_generation_match=generation,
                                        retry=_retry(on_error=retried.append))
                return True
            except exceptions.PreconditionFailed:
                if not retried:
                    return False
                # An attempt whose answer was lost may have landed, so its retry gets 412:
                # then the object holds exactly our bytes (callers write unique content).
                current, _ = self.read_with_token(uri)
                return current == data

        return self._call(uri, action, write)

    def create_exclusive(self, uri: str, data: bytes) -> bool:
        return self._conditional_write(uri, data, 0, "create")

    def compare_and_swap(self, uri: str, data: bytes, expected_token: str | None) -> bool:
        generation = 0 if expected_token is None else int(expected_token)
        return self._conditional_write(uri, data, generation, "compare-and-swap")

    def exists(self, uri: str) -> bool:
        bucket, name = split_gs_uri(uri)

        def probe():
            if name and self.client.bucket(bucket).blob(name).exists(retry=_retry()):
                return True
            prefix = f"{name}/" if name else ""
            blobs = self.client.list_blobs(bucket, prefix=prefix, max_results=1, retry=_retry())
            return any(True for _ in blobs)

        return self._call(uri, "check existence", probe)

    def list_files(self, prefix: str) -> list[FileInfo]:
        bucket, name = split_gs_uri(prefix)

        def listing():
            folder = f"{name}/" if name else ""
            found = []
            for blob in self.client.list_blobs(bucket, prefix=folder, retry=_retry()):
                relative = blob.name[len(folder):]
                # Hidden objects are claims or temporaries, never data (as on local disk).
                if relative and not any(p.startswith(".") for p in relative.split("/")) \
                        and not relative.endswith("/"):
                    found.append(FileInfo(f"gs://{bucket}/{blob.name}", relative, blob.size or 0))
            if not found and name:
                single = self.client.bucket(bucket).get_blob(name, retry=_retry())
                if single is not None:
                    found.append(FileInfo(prefix, name.rsplit("/", 1)[-1], single.size or 0))
            return found

        found = self._call(prefix, "list", listing)
        if not found and not self.exists(prefix):
            raise ObjectNotFoundError(f"{prefix} holds no objects", uri=prefix)
        return sorted(found, key=lambda info: info.relative_path)
