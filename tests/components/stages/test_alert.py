"""Alert: a real local HTTP server receives the webhook body; failures are not swallowed."""

import pytest

from components.reports import alert_markdown
from components.stages.alert import AlertDeliveryError, build_alert, post_alert, send_alert
from tests.conftest import WebhookReceiver


def test_alert_reaches_the_webhook(webhook):
    """Check that the POSTed body has Slack's text field and the structured fields."""
    payload = build_alert(status="rejected", reason="too weak", model_name="m", run_id="r1",
                          details={"new_rows": 5})
    send_alert(payload, webhook.url)
    [body] = webhook.bodies
    assert body["text"] == "[retrain] m: rejected: too weak (run r1)"
    assert (body["status"], body["new_rows"]) == ("rejected", 5)
    assert alert_markdown(payload).startswith("# Alert: rejected\n\n[retrain] m: rejected")


def test_transient_errors_are_retried():
    """Check that a 503 is retried and the alert still arrives."""
    receiver = WebhookReceiver(fail_first=2)
    try:
        post_alert(receiver.url, {"text": "x"}, backoff_seconds=0.01)
        assert receiver.bodies == [{"text": "x"}]
    finally:
        receiver.close()


def test_rejected_webhook_fails_loudly():
    """Check that a webhook that refuses the alert raises an error naming the URL."""
    receiver = WebhookReceiver(status=404)
    try:
        with pytest.raises(AlertDeliveryError, match="did not accept the alert: HTTP 404"):
            post_alert(receiver.url, {"text": "x"}, backoff_seconds=0.01)
    finally:
        receiver.close()


def test_unreachable_webhook_fails_loudly():
    """Check that an address nobody listens on gives a clear error."""
    with pytest.raises(AlertDeliveryError, match="127.0.0.1:9"):
        post_alert("http://127.0.0.1:9/hook", {"text": "x"}, attempts=1)


def test_webhook_from_the_secret_environment_variable(monkeypatch):
    """Check that with no URL parameter the alert goes to RETRAIN_ALERT_WEBHOOK_URL (a cluster
    secret), and that a failure message never shows the URL's secret path."""
    from components.stages.alert import WEBHOOK_ENV, AlertDeliveryError, build_alert, send_alert

    receiver = WebhookReceiver()
    try:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        send_alert(build_alert(status="rejected", reason="r", model_name="m", run_id="1"))
        assert [body["status"] for body in receiver.bodies] == ["rejected"]
    finally:
        receiver.close()
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/services/T0/B0/secret-token")
    with pytest.raises(AlertDeliveryError) as error:
        send_alert(build_alert(status="failed", reason="r", model_name="m", run_id="1"))
    assert "secret-token" not in str(error.value) and "127.0.0.1:9" in str(error.value)
