"""Cron expressions for KFP recurring runs.

KFP's scheduler (robfig/cron) reads six fields with **seconds first**: ``sec min hour dom mon
dow``. The five-field form people write (``0 0 * * *``, daily at midnight) passed through unchanged
means "at second 0 of minute 0, every hour... of every day" shifted by one field, so it runs far
more often than meant (kubeflow/pipelines#5014, kubeflow/kubeflow#5306). :func:`to_kfp_cron`
accepts either form (and ``@daily``-style shortcuts), validates every field with ``croniter``, and
returns the six-field form; :func:`next_run_times` shows when it will fire.
"""

from __future__ import annotations

from datetime import datetime, timezone

FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")
RANGES = ("0-59", "0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-6 or SUN-SAT")
SHORTCUTS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A cron expression KFP would misread or reject."""


def _valid(fields: list[str]) -> bool:
    from croniter import croniter

    # robfig/cron accepts '?' for "no specific value" in the day fields; croniter does not.
    text = " ".join("*" if field == "?" else field for field in fields)
    try:
        croniter(text, datetime(2026, 1, 1, tzinfo=timezone.utc), second_at_beginning=True)
    except (ValueError, KeyError):
        return False
    return True


def to_kfp_cron(expression: str) -> str:
    """The six-field, seconds-first form of a 5- or 6-field cron expression.

    Raises:
        CronError: naming the field that is wrong, or saying the schedule never fires.
    """
    text = " ".join(str(expression).split())
    text = SHORTCUTS.get(text.lower(), text)
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(
            f"cron expression {expression!r} has {len(fields)} field(s); expected 5 (minute "
            "hour day-of-month month day-of-week, e.g. '0 0 * * *') or KFP's 6 (seconds first, "
            "e.g. '0 0 0 * * *')")
    for index, field in enumerate(fields):
        probe = ["0", "0", "0", "*", "*", "*"]
        probe[index] = field
        if not _valid(probe):
            raise CronError(
                f"cron expression {expression!r}: the {FIELDS[index]} field {field!r} is not "
                f"valid (allowed: {RANGES[index]}, with '*', ',', '-' and '/')")
    if not _valid(fields):
        raise CronError(f"cron expression {expression!r} is not valid")
    kfp_cron = " ".join(fields)
    try:
        next_run_times(kfp_cron, count=1)
    except CronError as error:
        raise CronError(f"cron expression {expression!r} never fires ({error})") from None
    return kfp_cron


def next_run_times(kfp_cron: str, start: datetime | None = None,
                   count: int = 3) -> list[datetime]:
    """The next ``count`` times (UTC) a six-field expression fires after ``start`` (now)."""
    from croniter import CroniterBadDateError, croniter

    start = start or datetime.now(timezone.utc)
    text = " ".join("*" if field == "?" else field for field in kfp_cron.split())
    schedule = croniter(text, start, second_at_beginning=True, max_years_between_matches=10)
    try:
        return [schedule.get_next(datetime) for _ in range(count)]
    except CroniterBadDateError:
        raise CronError("no matching date in the next 10 years") from None
