"""Stage 7, alert: tell the team when a run rejects, finds invalid data, or fails.

The JSON body is Slack-compatible (a ``text`` field) and carries structured fields for other
receivers. The alert is always logged and written as Markdown; it is POSTed only when a webhook
URL is set. Delivery is bounded (connect and read timeouts, a few tries, a total budget), and a
delivery that fails does not change the run's outcome: it is returned as a :class:`Delivery`
that the run record and the CLI report (``retrain run`` then exits 3).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from components.outcomes import AlertDelivery
from components.params import BY_NAME, redacted_url

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# On a cluster the webhook URL can come from a Kubernetes secret through this variable; a local
# run passes it the same way (never as a task input, which kfp.local logs).
WEBHOOK_ENV = BY_NAME["alert_webhook_url"].env
ATTEMPTS = 3
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 5.0
BUDGET_SECONDS = 15.0  # for all attempts of one alert together, backoff included


@dataclass(frozen=True)
class Delivery:
    """What became of an alert: delivered, failed (with the reason), or only logged."""

    status: str
    reason: str = ""


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


def post_alert(url: str, payload: dict, *, attempts: int = ATTEMPTS,
               connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
               read_timeout: float = READ_TIMEOUT_SECONDS, budget_seconds: float = BUDGET_SECONDS,
               backoff_seconds: float = 0.5) -> int:
    """POST ``payload`` as JSON; retry transient failures within ``budget_seconds``; return the
    HTTP status. Raises :class:`AlertDeliveryError` naming the host, never the URL's path."""
    import requests

    deadline = time.monotonic() + budget_seconds
    last_problem = ""
    for attempt in range(1, attempts + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            last_problem += f" (gave up after {budget_seconds:g} s)"
            break
        try:
            response = requests.post(url, json=payload, allow_redirects=False, timeout=(
                min(connect_timeout, left), min(read_timeout, left)))
        except requests.RequestException as error:
            last_problem = type(error).__name__  # its text would quote the secret URL path
        else:
            if response.status_code < 300:
                return response.status_code
            last_problem = f"HTTP {response.status_code}"
            if response.status_code not in RETRYABLE_STATUS:
                break
        if attempt < attempts:
            time.sleep(min(backoff_seconds * 2 ** (attempt - 1),
                           max(deadline - time.monotonic(), 0)))
    raise AlertDeliveryError(
        f"alert webhook {redacted_url(url)} did not accept the alert: {last_problem}")


def send_alert(payload: dict, webhook_url: str = "") -> Delivery:
    """Log the alert, and POST it if a webhook is set (the parameter, else ``WEBHOOK_ENV``).

    A delivery failure is logged and returned, never raised: it must not change the run's
    outcome, only be reported.
    """
    webhook_url = webhook_url or os.environ.get(WEBHOOK_ENV, "")
    logger.warning("ALERT %s", payload["text"])
    print(f"ALERT {payload['text']}", flush=True)
    if not webhook_url:
        return Delivery(AlertDelivery.LOGGED)
    try:
        post_alert(webhook_url, payload)
    except AlertDeliveryError as error:
        print(f"alert not delivered: {error}", flush=True)
        return Delivery(AlertDelivery.FAILED, str(error))
    return Delivery(AlertDelivery.DELIVERED)
