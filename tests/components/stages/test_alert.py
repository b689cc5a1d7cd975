"""Alert: a real local HTTP server receives the webhook body; delivery is bounded, and a failed
delivery is returned (to be recorded and reported), never raised into the run."""

import socket
import threading
import time

import pytest

from components.outcomes import AlertDelivery
from components.reports import alert_markdown
from components.stages.alert import (
    WEBHOOK_ENV,
    AlertDeliveryError,
    build_alert,
    post_alert,
    send_alert,
)
from tests.helpers import WebhookReceiver

SECRET_URL_PATH = "/services/T0/B0/secret-token"


def _payload(status="rejected"):
    return build_alert(status=status, reason="too weak", model_name="m", run_id="r1",
                       details={"new_rows": 5})


def test_alert_reaches_the_webhook(webhook):
    """Check that the POSTed body has Slack's text field and the structured fields."""
    delivery = send_alert(_payload(), webhook.url)
    [body] = webhook.bodies
    assert delivery.status == AlertDelivery.DELIVERED
    assert body["text"] == "[retrain] m: rejected: too weak (run r1)"
    assert (body["status"], body["new_rows"]) == ("rejected", 5)
    assert alert_markdown(_payload()).startswith("# Alert: rejected\n\n[retrain] m: rejected")


def test_without_a_webhook_the_alert_is_only_logged(monkeypatch, capsys):
    """Check that with no URL anywhere the alert is printed and said to be only logged."""
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert send_alert(_payload()).status == AlertDelivery.LOGGED
    assert "ALERT [retrain] m: rejected: too weak" in capsys.readouterr().out


def test_transient_errors_are_retried():
    """Check that a 503 is retried and the alert still arrives."""
    receiver = WebhookReceiver(fail_first=2)
    try:
        post_alert(receiver.url, {"text": "x"}, backoff_seconds=0.01)
        assert receiver.bodies == [{"text": "x"}]
    finally:
        receiver.close()


@pytest.mark.parametrize("status", [404, 500], ids=["refused", "server-error"])
def test_a_webhook_that_does_not_take_it_is_a_failed_delivery(status):
    """Check that a refusing webhook raises from post_alert, and send_alert returns the failure
    with its reason instead of raising."""
    receiver = WebhookReceiver(status=status)
    try:
        with pytest.raises(AlertDeliveryError, match=f"did not accept the alert: HTTP {status}"):
            post_alert(receiver.url, {"text": "x"}, backoff_seconds=0.01)
        delivery = send_alert(_payload(), receiver.url + SECRET_URL_PATH)
    finally:
        receiver.close()
    assert delivery.status == AlertDelivery.FAILED
    assert f"HTTP {status}" in delivery.reason
    assert "secret-token" not in delivery.reason


def test_unreachable_webhook_names_the_host_and_port():
    """Check that an address nobody listens on gives a clear error naming host and port."""
    with pytest.raises(AlertDeliveryError, match=r"'http://127.0.0.1:9/...' did not accept the "
                                                 r"alert: ConnectionError"):
        post_alert("http://127.0.0.1:9/hook", {"text": "x"}, attempts=1)


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}{SECRET_URL_PATH}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_webhook_that_never_answers_is_given_up_within_the_budget(silent_server):
    """Check that a webhook accepting the connection and never answering holds an alert no longer
    than its budget, and the failure says so without the URL's path."""
    start = time.monotonic()
    with pytest.raises(AlertDeliveryError) as error:
        post_alert(silent_server, {"text": "x"}, read_timeout=0.5, budget_seconds=1.5,
                   backoff_seconds=0.1)
    assert time.monotonic() - start < 3.0
    assert "ReadTimeout" in str(error.value)
    assert "secret-token" not in str(error.value)


def test_webhook_from_the_secret_environment_variable(monkeypatch):
    """Check that with no URL parameter the alert goes to RETRAIN_ALERT_WEBHOOK_URL (a cluster
    secret), and that a failure never shows the URL's secret path."""
    receiver = WebhookReceiver()
    try:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        assert send_alert(_payload()).status == AlertDelivery.DELIVERED
        assert [body["status"] for body in receiver.bodies] == ["rejected"]
    finally:
        receiver.close()
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9" + SECRET_URL_PATH)
    delivery = send_alert(_payload("failed"))
    assert delivery.status == AlertDelivery.FAILED
    assert "secret-token" not in delivery.reason
    assert "127.0.0.1:9" in delivery.reason
