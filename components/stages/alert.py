"""Stage 7, alert: tell the team when a run rejects, finds invalid data, or fails.

The JSON body is Slack-compatible (a ``text`` field) and carries structured fields for other
receivers. The alert is always logged and written as Markdown; it is POSTed only when a webhook
URL is set. A webhook that keeps failing fails the step: an alert nobody received is not a success.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# On a cluster the webhook URL can come from a Kubernetes secret through this variable.
WEBHOOK_ENV = "RETRAIN_ALERT_WEBHOOK_URL"


def redacted(url: str) -> str:
    """Scheme and host only: a webhook URL's path is its secret (Slack, Teams)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..." if parts.netloc else "(webhook)"


class AlertDeliveryError(Exception):
    """The webhook did not accept the alert."""


def build_alert(*, status: str, reason: str, model_name: str, run_id: str,
                details: dict | None = None) -> dict:
    """The alert body: a one-line ``text`` plus structured fields."""
    return {
        "text": f"[retrain] {model_name}: {status}: {reason} (run {run_id})",
        "status": status,
        "reason": reason,
        "model_name": model_name,
        "run_id": run_id,
        **(details or {}),
    }


def post_alert(url: str, payload: dict, *, attempts: int = 3, timeout: float = 10.0,
               backoff_seconds: float = 0.5) -> int:
    """POST ``payload`` as JSON; retry transient failures; return the HTTP status."""
    import requests

    last_problem = ""
    for attempt in range(1, attempts + 1):
        try:
            response = requests.post(url, json=payload, timeout=timeout)
        except requests.RequestException as error:
            last_problem = type(error).__name__  # its text would quote the secret URL path
        else:
            if response.status_code < 300:
                return response.status_code
            last_problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRYABLE_STATUS:
                break
        if attempt < attempts:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise AlertDeliveryError(
        f"alert webhook {redacted(url)} did not accept the alert: {last_problem}")


def send_alert(payload: dict, webhook_url: str = "") -> None:
    """Log the alert, and POST it if a webhook is set (the parameter, else the secret-fed
    ``RETRAIN_ALERT_WEBHOOK_URL``)."""
    import os

    webhook_url = webhook_url or os.environ.get(WEBHOOK_ENV, "")
    logger.warning("ALERT %s", payload["text"])
    print(f"ALERT {payload['text']}", flush=True)
    if webhook_url:
        post_alert(webhook_url, payload)
