"""Shared fixtures: generated data, a local webhook receiver, a registry on tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import demo_data
from tests.helpers import WebhookReceiver, make_rows


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory):
    """The deterministic demo data (initial quarter + 12 months), written once per session."""
    folder = tmp_path_factory.mktemp("demo")
    demo_data.write_demo_data(folder)
    return folder


@pytest.fixture
def rows():
    return make_rows


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


# KServe's own InferenceService CRD, in the shared folder beside the clone.
KSERVE_CRD = Path(__file__).resolve().parents[2] / "shared" / "kserve" / \
    "serving.kserve.io_inferenceservices.yaml"


@pytest.fixture(scope="session")
def crd_validator():
    """A validator for KServe's v1beta1 InferenceService schema (parsed once: it is large)."""
    import jsonschema
    import yaml

    crd = yaml.load(KSERVE_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="session")
def gcs():
    """gcp-storage-emulator behind the precondition-enforcing proxy, as STORAGE_EMULATOR_HOST."""
    from components.storage import gcs as gcs_backend
    from tests.gcs_emulator import Emulator, PreconditionProxy

    emulator = Emulator()
    proxy = PreconditionProxy(emulator.port)
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        # A stopped server fails a test in seconds.
        environment.setenv("RETRAIN_GCS_RETRY_SECONDS", "3")
        gcs_backend._client.cache_clear()
        yield {"bucket": emulator.bucket, "emulator": emulator, "proxy": proxy}
        proxy.close()
        emulator.stop()
        gcs_backend._client.cache_clear()


@pytest.fixture
def gs_prefix(gcs, request):
    """A fresh gs:// folder for one test; the proxy's log and faults start empty."""
    import uuid

    gcs["proxy"].requests.clear()
    gcs["proxy"].fail_next.clear()
    gcs["proxy"].silent = False
    yield f"gs://{gcs['bucket']}/{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    gcs["proxy"].silent = False


@pytest.fixture
def kubernetes(tmp_path, monkeypatch):
    """A fake Kubernetes API (KServe InferenceServices) that the kubeconfig points at."""
    from tests.fake_kubernetes import FakeKubernetes

    fake = FakeKubernetes(ready_after=0)
    monkeypatch.setenv("KUBECONFIG", fake.kubeconfig(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def chromium():
    """Debian's headless Chromium (make test installs it where it is missing)."""
    import shutil

    path = shutil.which("chromium")
    assert path, "make test installs Debian's chromium; run `make chromium`"
    return path
