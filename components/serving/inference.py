"""The Open Inference Protocol (KServe V2) as this project speaks it, apart from any server.

One input per feature column, named as the column, shape ``[n]``: ``FP64`` for a numeric
feature, ``BYTES`` for a categorical one. A classifier has two outputs: ``predict`` (the class, as
the label's type) and ``predict_proba`` (``FP64``, shape ``[n, classes]``); a regressor one,
``predict`` (``FP64``). The server (:mod:`components.serving.server`)
and deploy's infra validation (:mod:`components.serving.infra_validation`) both read this module, so
what is served is what is checked before promotion.
"""

from __future__ import annotations

import math

from components.data.schema import NUMERIC, plain_value

PREDICT, PREDICT_PROBA = "predict", "predict_proba"
OUTPUTS = (PREDICT, PREDICT_PROBA)
FEATURE_DATATYPES = {NUMERIC: "FP64", "categorical": "BYTES"}
NUMERIC_DATATYPES = frozenset({"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8",
                               "UINT64", "UINT32", "UINT16", "UINT8"})


def label_datatype(classes: list) -> str:
    """The V2 datatype of the ``predict`` output for these classes."""
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if classes and all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


def plain(value):
    """A JSON-ready Python value of a numpy scalar (NaN as None, which JSON can carry)."""
    value = plain_value(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def v2_request(frame, feature_kinds: dict[str, str], *, request_id: str = "",
               outputs: list[str] | None = None) -> dict:
    """A V2 inference request for the rows of ``frame``: one input per feature column."""
    rows = len(frame)
    inputs = []
    for column, kind in feature_kinds.items():
        values = frame[column].tolist() if column in frame else [None] * rows
        if kind != NUMERIC:
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                      for v in values]
        inputs.append({"name": column, "shape": [rows], "datatype": FEATURE_DATATYPES[kind],
                       "data": [plain(v) for v in values]})
    body = {"inputs": inputs}
    if request_id:
        body["id"] = request_id
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


def v2_outputs(response: dict) -> dict[str, list]:
    """The outputs of a V2 JSON response by name: ``predict`` a list, ``predict_proba`` a list
    of rows."""
    found = {}
    for output in response.get("outputs", []):
        data = output["data"]
        if len(output.get("shape", [])) == 2:
            width = output["shape"][1]
            data = [data[i:i + width] for i in range(0, len(data), width)]
        found[output["name"]] = data
    return found
