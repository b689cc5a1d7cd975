"""Every outcome a stage or a run can end with: one name for each, used by stages, the pipeline's
conditions, the run record and the CLI alike.

They are plain strings (the pipeline compares them with KFP conditions, and they are JSON fields
and CLI output that scripts match on), grouped by who decides them.
"""

from __future__ import annotations


class Strategy:
    """How retrain makes the challenger (the ``strategy`` parameter)."""

    AUTO = "auto"  # the best of the others on the selection rows
    FINETUNE = "finetune"  # continue the champion on the new rows
    FULL = "full"  # refit on every row
    WINDOW = "window"  # refit on the newest rows
    ALL = (AUTO, FINETUNE, FULL, WINDOW)
    # auto's fourth candidate, not a value of the parameter: refit on the rows since the batch
    # where the champion's world changed, when its unseen rows show such a change
    SINCE_CHANGE = "since_change"


class Task:
    """What the model predicts (the ``task`` parameter): a class, or a number."""

    AUTO = "auto"  # inferred from the label (components.data.schema.infer_task)
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    ALL = (AUTO, CLASSIFICATION, REGRESSION)
    KNOWN = (CLASSIFICATION, REGRESSION)


class GateMetric:
    """What the deploy gate compares (the ``metric`` parameter). Higher is better for accuracy,
    F1, ROC AUC and R²; lower for the errors RMSE and MAE."""

    AUTO = "auto"  # the task's default: accuracy for classification, rmse for regression
    ACCURACY = "accuracy"
    F1 = "f1"  # macro F1
    ROC_AUC = "roc_auc"  # one-vs-rest, macro, for more than two classes
    RMSE = "rmse"  # root mean squared error
    MAE = "mae"  # mean absolute error
    R2 = "r2"  # coefficient of determination
    CLASSIFICATION = (ACCURACY, F1, ROC_AUC)
    REGRESSION = (RMSE, MAE, R2)
    LOWER_IS_BETTER = (RMSE, MAE)
    # Metrics whose scores lie in 0..1, so one threshold in 0..1 gates them.
    UNIT_RANGE = (ACCURACY, F1, ROC_AUC, R2)
    ALL = (AUTO, *CLASSIFICATION, *REGRESSION)
    FOR_TASK = {Task.CLASSIFICATION: CLASSIFICATION, Task.REGRESSION: REGRESSION}

    @staticmethod
    def resolved(metric: str, task: str) -> str:
        """``metric``, with ``auto`` made the task's default."""
        if metric != GateMetric.AUTO:
            return metric
        return GateMetric.RMSE if task == Task.REGRESSION else GateMetric.ACCURACY

    @staticmethod
    def lower_is_better(metric: str) -> bool:
        return metric in GateMetric.LOWER_IS_BETTER


class RetrainWhen:
    """When a run with valid new data retrains (the ``retrain_when`` parameter)."""

    ALWAYS = "always"
    DRIFT = "drift"  # only when a feature or the label drifted
    MIN_ROWS = "min_rows"  # once enough labelled new rows wait (skipped until then)
    ALL = (ALWAYS, DRIFT, MIN_ROWS)


class IngestOutcome:
    """Whether ingest found anything to validate."""

    NEW_DATA = "new-data"
    NO_NEW_DATA = "no-new-data"


class ValidateDecision:
    """What validate decided about the new rows, under the ``retrain_when`` policy."""

    RETRAIN = "retrain"
    INVALID_DATA = "invalid-data"
    SKIPPED = "skipped"


class GateDecision:
    """What the deploy gate decided about the challenger."""

    DEPLOY = "deploy"
    REJECT = "reject"


class DeployResult:
    """What deploy did: promoted the challenger, or lost the race to another run."""

    DEPLOYED = "deployed"
    REJECTED = "rejected"


class RunStatus:
    """How a run ended, as its run record, ``retrain run --json`` and the alerts say it."""

    DEPLOYED = DeployResult.DEPLOYED
    REJECTED = DeployResult.REJECTED
    INVALID_DATA = ValidateDecision.INVALID_DATA
    NO_NEW_DATA = IngestOutcome.NO_NEW_DATA
    SKIPPED = ValidateDecision.SKIPPED
    FAILED = "failed"  # a stage crashed: only the exit handler's alert says so
    # The statuses a run record can hold (a failed run leaves none).
    RECORDED = (DEPLOYED, REJECTED, INVALID_DATA, NO_NEW_DATA, SKIPPED)


class AlertDelivery:
    """What became of a run's alert (``alert_delivery`` in the run record)."""

    NONE = "none"  # the run's outcome alerts nobody (deployed, skipped, no-new-data)
    LOGGED = "logged"  # no webhook is set: the alert is in the log and the Markdown only
    DELIVERED = "delivered"
    FAILED = "failed"  # the webhook did not take it: `retrain run` exits 3


class Severity:
    """How much a validation finding matters: an error blocks the run, a warning is reported."""

    ERROR = "error"
    WARNING = "warning"
