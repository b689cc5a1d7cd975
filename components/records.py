"""The records that cross stages, as dataclasses: findings, the ingest report, the training
summary, the decision record and the run record.

Each is written as JSON (an artifact, a registry file, ``retrain run --json``) by ``to_dict`` and
read back by ``from_dict``; the JSON fields are contracts scripts rely on, so they stay as named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

from components.outcomes import AlertDelivery, Severity


def utc_iso(moment: datetime) -> str:
    """A time-zone-aware moment (a datetime or a pandas Timestamp) as UTC ISO 8601 with
    microseconds and a ``Z`` suffix: how every time in a record is written."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now_iso() -> str:
    """The current UTC time, as :func:`utc_iso` writes it."""
    return utc_iso(datetime.now(timezone.utc))


SUMMARY_LIMIT = 2000  # characters of a one-line summary, which travels as a task parameter


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut: values derived from data
    (a column name, an example value) go into messages and task parameters, which must stay
    small whatever the data holds."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def number(value) -> str:
    """A score as every report and summary shows it: four decimals, ``-`` when there is none."""
    return "-" if value is None else f"{value:.4f}"


NAMED_OUTPUT = "named_output"


def named_output():
    """A field of a step's result that is one of the stage's named outputs, which the pipeline
    branches on and later stages take (:mod:`components.contracts`)."""
    return field(metadata={NAMED_OUTPUT: True})


class StepResult:
    """What a step returns: a dataclass of named outputs and what its artifacts' metadata says."""

    def artifact_metadata(self) -> dict[str, dict]:
        """Metadata per output artifact: plain keys, or for a ``Metrics`` artifact the metrics
        by name; for ``ClassificationMetrics``, ``confusion_matrix`` (labels, rows) and ``roc``
        (fpr, tpr, thresholds) or None."""
        return {}


# Validation checks of values beyond the champion's training data (see components.stages.validate).
BEYOND_TRAINING_CHECKS = ("beyond_training_range", "unseen_in_training")


def _known_fields(cls, payload: dict) -> dict:
    """The keys of ``payload`` that are fields of ``cls`` (older files may hold more or fewer)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in payload.items() if key in names}


# -- validation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One problem found in the new data; ``check`` is a stable name scripts can match on."""

    severity: str
    problem: str
    file: str = ""
    column: str = ""
    check: str = ""

    def __post_init__(self):  # names and values come from the data: keep them small
        for name, limit in (("problem", 1000), ("file", 300), ("column", 200)):
            object.__setattr__(self, name, bounded(getattr(self, name), limit))

    def message(self) -> str:
        where = ", ".join(
            part for part in (f"file {self.file}" if self.file else "",
                              f"column {self.column!r}" if self.column else "") if part
        )
        return f"{where}: {self.problem}" if where else self.problem


@dataclass
class ValidationReport:
    """All findings; the data is valid when none is an error."""

    findings: list[Finding]
    rows: int
    labelled_rows: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors

    def beyond_training(self) -> list[str]:
        """Features with values beyond what the champion was trained on (a range or a category
        set of its own schema): drift, not errors."""
        return list(dict.fromkeys(f.column for f in self.findings
                                  if f.check in BEYOND_TRAINING_CHECKS))

    def summary(self, limit: int = 5) -> str:
        """One line naming the first errors (or ``ok``), for alerts and the run record."""
        if self.valid:
            return f"ok: {self.rows} new rows passed validation ({len(self.warnings)} warning(s))"
        shown = "; ".join(f.message() for f in self.errors[:limit])
        more = len(self.errors) - limit
        return bounded(f"invalid data: {shown}" + (f"; and {more} more" if more > 0 else ""),
                       SUMMARY_LIMIT)

    def findings_list(self) -> list[dict]:
        return [asdict(f) for f in self.findings]

    def to_dict(self) -> dict:
        return {"valid": self.valid, "rows": self.rows, "labelled_rows": self.labelled_rows,
                "findings": self.findings_list()}


@dataclass
class ValidationSummary:
    """What a validation passes on to the decision and run records: drifted names, findings,
    each feature's pooled drift statistic (``{feature: {test, statistic, drift, verdict}}``)
    and the label's share of each class in the new rows."""

    drift: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    drift_statistics: dict[str, dict] = field(default_factory=dict)
    label_shares: dict[str, float] = field(default_factory=dict)
    task: str = ""  # what the model predicts, as the schema decided it (empty: not known)
    task_reason: str = ""  # why: task=auto's reading of the label, or the champion's task

    @classmethod
    def from_dict(cls, payload: dict | None) -> ValidationSummary:
        payload = payload or {}
        return cls(list(payload.get("drift") or []), list(payload.get("findings") or []),
                   dict(payload.get("drift_statistics") or {}),
                   dict(payload.get("label_shares") or {}), str(payload.get("task") or ""),
                   str(payload.get("task_reason") or ""))


# -- ingest ------------------------------------------------------------------------------------
@dataclass
class IngestReport:
    """What ingest read (the ``ingest_report`` artifact); its data window travels on to the
    decision record, and deploy moves the watermark to ``new_watermark``."""

    outcome: str
    cutoff: str
    watermark_before: str | None
    new_watermark: str | None
    new_rows: int
    history_rows: int
    new_files: dict[str, dict]
    consumed_files: dict[str, dict]
    file_columns: dict[str, list[str]]
    problems: list[str]
    champion_version: str = ""
    source_uri: str = ""
    history_read: str = ""

    def data_window(self) -> dict:
        """Everything but the per-file column lists, for the decision and run records."""
        window = asdict(self)
        window.pop("file_columns")
        return window

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> IngestReport:
        return cls(**_known_fields(cls, payload))


# -- training and the decision -----------------------------------------------------------------
@dataclass
class TrainingSummary:
    """How the challenger was trained (``training.json`` beside the model)."""

    strategy: str
    requested_strategy: str
    model_type: str
    candidates: list[dict]
    trace: list[dict]
    notes: list[str]
    feature_kinds: dict[str, str]
    classes: list  # none for a regressor
    libraries: dict[str, str] = field(default_factory=dict)  # what saved the model file
    task: str = "classification"  # written before regression: classification
    model_config: dict = field(default_factory=dict)  # the factory's keyword arguments
    # Rows learned from in each batch (a file, or a file's month); a fine-tune's include its
    # parent's. Empty where unknown (versions written before it).
    training_batches: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> TrainingSummary:
        return cls(**_known_fields(cls, payload))


@dataclass
class ChampionScores:
    """The champion as the gate saw it."""

    version: str
    metrics: dict


@dataclass
class ChallengerScores:
    """The challenger as the gate saw it: how it was trained (without the epoch trace), and its
    scores. Written flat, as ``training.json``'s fields beside ``metrics``."""

    training: TrainingSummary
    metrics: dict

    def to_dict(self) -> dict:
        summary = self.training.to_dict()
        summary.pop("trace")
        return {**summary, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, payload: dict) -> ChallengerScores:
        return cls(TrainingSummary.from_dict({"trace": [], **payload}), dict(payload["metrics"]))


@dataclass
class DecisionRecord:
    """Everything the deploy gate decided on (the ``decision_record`` artifact)."""

    run_id: str
    model_name: str
    decision: str
    reason: str
    cold_start: bool
    metric: str  # as the gate resolved it for the task
    threshold: float | None  # the bar the metric was held to; None: none (a regression default)
    min_improvement: float
    params: dict
    champion: ChampionScores | None
    challenger: ChallengerScores
    data: dict
    validation: ValidationSummary
    gate: dict = field(default_factory=dict)  # rows, delta, ci_low, ci_high, p_value, method
    warnings: list[str] = field(default_factory=list)  # what the run went on without

    def to_dict(self) -> dict:
        record = asdict(self)
        record["challenger"] = self.challenger.to_dict()
        return record

    @classmethod
    def from_dict(cls, payload: dict) -> DecisionRecord:
        values = _known_fields(cls, payload)
        values["champion"] = ChampionScores(**payload["champion"]) if payload.get("champion") \
            else None
        values["challenger"] = ChallengerScores.from_dict(payload["challenger"])
        values["validation"] = ValidationSummary.from_dict(payload.get("validation"))
        return cls(**values)


@dataclass
class VersionMetadata:
    """What a version's ``metadata.json`` says of it: where it came from, how it was trained,
    what it scored; the registry adds ``version`` and ``model_sha256`` when it publishes."""

    model_name: str = ""
    run_id: str = ""
    created_at: str = ""
    parent_version: str | None = None
    metrics: dict = field(default_factory=dict)
    champion_metrics_at_deploy: dict | None = None
    decision_reason: str = ""
    data_window: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    strategy: str = ""
    model_type: str = ""  # hgb, sgd, or the factory's import path
    feature_kinds: dict = field(default_factory=dict)
    classes: list = field(default_factory=list)
    task: str = "classification"
    model_config: dict = field(default_factory=dict)
    training_batches: dict = field(default_factory=dict)  # TrainingSummary.training_batches
    label_column: str = ""
    timestamp_column: str = ""
    libraries: dict = field(default_factory=dict)
    version: str = ""
    model_sha256: str = ""

    @classmethod
    def of(cls, record: DecisionRecord, *, model_name: str, run_id: str, label_column: str,
           timestamp_column: str) -> VersionMetadata:
        """The metadata of the challenger a decision record promotes."""
        training, champion = record.challenger.training, record.champion
        return cls(
            model_name=model_name, run_id=run_id, created_at=utc_now_iso(),
            parent_version=champion.version if champion else None,
            metrics=record.challenger.metrics,
            champion_metrics_at_deploy=champion.metrics if champion else None,
            decision_reason=record.reason, data_window=record.data, params=record.params,
            strategy=training.strategy, model_type=training.model_type,
            feature_kinds=training.feature_kinds, classes=training.classes,
            task=training.task, model_config=training.model_config,
            training_batches=training.training_batches, label_column=label_column,
            timestamp_column=timestamp_column,
            libraries=training.libraries)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> VersionMetadata:
        return cls(**_known_fields(cls, payload))


# -- the run -----------------------------------------------------------------------------------
@dataclass
class JournalEntry:
    """Where one stage of a run is (``runs/<run_id>/stages/<stage>.json``): running, then
    succeeded or failed, with its time and memory, and for a failure the exception's type, its
    message and the file or object it concerns. Fields a stage has not reached are absent."""

    stage: str
    state: str
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    peak_rss_mib: int | None = None
    error_type: str | None = None
    message: str | None = None
    concerns: str | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, payload: dict) -> JournalEntry:
        return cls(**_known_fields(cls, payload))


@dataclass
class RunRecord:
    """One run's outcome (``runs/<run_id>.json``): what ``retrain run --json`` prints, and the
    audit trail of every decision: deployed, rejected, invalid-data, no-new-data, skipped.

    ``drift`` names the drifted features (the label too when its distribution moved) and
    ``findings`` lists validation findings; both are empty when validation did not run.
    """

    status: str
    reason: str
    run_id: str
    model_name: str
    new_rows: int
    champion: dict
    challenger: dict
    metric: str | None
    threshold: float | None
    data: dict | None
    drift: list[str]
    findings: list[dict]
    finished_at: str
    alert_delivery: str = AlertDelivery.NONE
    alert_delivery_reason: str = ""
    gate: dict | None = None  # the deploy gate's statistics, when it ran
    warnings: list[str] = field(default_factory=list)  # what the run went on without
    drift_statistics: dict[str, dict] = field(default_factory=dict)  # feature -> its statistic
    label_shares: dict[str, float] = field(default_factory=dict)  # class -> share of new rows
    task: str = ""  # classification or regression, when validation decided it
    task_reason: str = ""  # why (task=auto's reading of the label)
    log: str | None = None  # where the stages' logs are: set by a local run, not stored
    artifacts: str | None = None  # where its artifacts are: likewise

    @classmethod
    def of(cls, *, status: str, reason: str, run_id: str, model_name: str, new_rows: int,
           decision: DecisionRecord | None = None, champion_version: str = "",
           deployed_version: str = "", unpromoted_version: str = "",
           validation: ValidationSummary | None = None) -> RunRecord:
        """The record of a run that ended with ``status``, from what the run knew by then."""
        champion, challenger = (decision.champion, decision.challenger) if decision else \
            (None, None)
        validation = validation or (decision.validation if decision else ValidationSummary())
        return cls(
            status=status,
            reason=reason,
            run_id=run_id,
            model_name=model_name,
            new_rows=int(new_rows),
            champion={"version": (champion.version if champion else "") or champion_version
                      or None, "metrics": champion.metrics if champion else None},
            challenger={"version": deployed_version or None,
                        "unpromoted_version": unpromoted_version or None,
                        "strategy": challenger.training.strategy if challenger else None,
                        "model_type": challenger.training.model_type if challenger else None,
                        "metrics": challenger.metrics if challenger else None},
            metric=decision.metric if decision else None,
            threshold=decision.threshold if decision else None,
            data=decision.data if decision else None,
            drift=list(validation.drift),
            findings=list(validation.findings),
            finished_at=utc_now_iso(),
            gate=decision.gate if decision and decision.gate else None,
            warnings=list(decision.warnings) if decision else [],
            drift_statistics=dict(validation.drift_statistics),
            label_shares=dict(validation.label_shares),
            task=validation.task,
            task_reason=validation.task_reason,
        )

    def to_dict(self) -> dict:
        record = asdict(self)
        for local in ("log", "artifacts"):  # set by a local run only
            if record[local] is None:
                record.pop(local)
        return record

    @classmethod
    def from_dict(cls, payload: dict) -> RunRecord:
        return cls(**_known_fields(cls, payload))
