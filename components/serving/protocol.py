"""Requests and responses of the two protocols, apart from the HTTP server.

Every problem with what a client sent is a :class:`RequestError` with a 4xx status and a message
naming the input, the column or the limit; nothing a client sends reaches the model unchecked.

- Open Inference Protocol (KServe V2): JSON, and the binary tensor extension the published
  clients use by default (``Inference-Header-Content-Length``: a JSON header, then the raw
  tensors; ``BYTES`` elements each prefixed by their 4-byte little-endian length).
- KServe V1: ``{"instances": [...]}``, each instance an object of column -> value, or a list in
  the model's column order; ``{"predictions": [...]}`` back.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np

from components.data.schema import NUMERIC
from components.serving.inference import NUMERIC_DATATYPES, PREDICT, PREDICT_PROBA, plain
from components.serving.model import ServedModel

BINARY_HEADER = "inference-header-content-length"
_NUMPY_TYPES = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
                "INT16": "<i2", "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
                "UINT8": "u1", "BOOL": "?"}


class RequestError(Exception):
    """What a client sent cannot be served; ``status`` is the HTTP status to answer with, and
    ``headers`` any it needs (``Retry-After`` on a 503)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _shown(name) -> str:
    text = str(name)
    return repr(text if len(text) <= 80 else text[:80] + "...")


def parse_json(data: bytes) -> object:
    """The body as JSON, or a 400 naming what is wrong: not JSON, not UTF-8, nested too deeply,
    a number too long to read. ``NaN`` and ``Infinity`` literals, which the published clients
    send for float tensors, are read: NaN is a missing value, an infinity is refused where a
    number is checked (:func:`_checked`)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise RequestError(400, "the body is not valid JSON: it is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError, an over-long integer
        raise RequestError(400, f"the body is not valid JSON ({_shown(error)})") from None


# -- V2 ----------------------------------------------------------------------------------------
def _binary_elements(raw: bytes, datatype: str, name: str) -> list:
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise RequestError(400, f"input {_shown(name)}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise RequestError(400, f"input {_shown(name)}: truncated BYTES element")
            values.append(raw[offset:offset + length].decode("utf-8", errors="replace"))
            offset += length
        return values
    dtype = np.dtype(_NUMPY_TYPES.get(datatype, "<f8"))
    if datatype not in _NUMPY_TYPES or len(raw) % dtype.itemsize:
        raise RequestError(400, f"input {_shown(name)}: {len(raw)} bytes are not whole "
                                f"{datatype} elements")
    return np.frombuffer(raw, dtype=dtype).tolist()


def v2_body(data: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON part of a V2 request and its binary tensor data (empty for plain JSON)."""
    if header_length is None:
        body, binary = parse_json(data), b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise RequestError(400, f"{BINARY_HEADER} {header_length!r} is not a number") \
                from None
        if not 0 <= length <= len(data):
            raise RequestError(400, f"{BINARY_HEADER} {length} is outside the body "
                                    f"({len(data)} bytes)")
        body, binary = parse_json(data[:length]), data[length:]
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise RequestError(400, "a V2 request is a JSON object with an 'inputs' list")
    return body, binary


def _parameters(holder: dict, where: str) -> dict:
    """The ``parameters`` object of a request, an input or an output (empty when absent)."""
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise RequestError(400, f"'parameters' of {where} must be an object")
    return parameters


def _flat(data) -> list:
    if not isinstance(data, list):
        raise RequestError(400, "'data' must be a list")
    if data and isinstance(data[0], list):
        return [value for row in data for value in _flat(row)]
    return data


def v2_columns(body: dict, binary: bytes, served: ServedModel,
               max_rows: int) -> tuple[dict[str, list], list[str]]:
    """Each feature column's values from a V2 request, checked against the model's features;
    and the names of the inputs that are not features, which are ignored (an id, the label)."""
    columns, offset, ignored = {}, 0, []
    for tensor in body["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise RequestError(400, "every input needs a 'name'")
        name, datatype = tensor["name"], tensor.get("datatype")
        if name in columns or name in ignored:
            raise RequestError(400, f"input {_shown(name)} is given twice")
        size = _parameters(tensor, f"input {_shown(name)}").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise RequestError(400, f"input {_shown(name)}: binary_data_size {size!r} "
                                        "does not fit the binary data")
            values = _binary_elements(binary[offset:offset + size], datatype, name)
            offset += size
        else:
            values = _flat(tensor.get("data"))
        if name not in served.feature_kinds:
            ignored.append(name)
            continue
        shape = tensor.get("shape")
        if not (isinstance(shape, list) and all(isinstance(d, int) for d in shape)
                and shape and math.prod(shape) == len(values)
                and (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))):
            raise RequestError(400, f"input {_shown(name)}: shape {shape!r} does not hold its "
                                    f"{len(values)} value(s) as [n] (or [n, 1])")
        columns[name] = _checked(name, datatype, values, served.feature_kinds[name])
    missing = [c for c in served.feature_kinds if c not in columns]
    if missing:
        raise RequestError(400, f"missing input(s) {', '.join(map(_shown, missing))}; the "
                                "model reads every feature (send null for a missing value)")
    return _same_rows(columns, max_rows), ignored


def _checked(name: str, datatype, values: list, kind: str) -> list:
    if kind == NUMERIC:
        if datatype not in NUMERIC_DATATYPES:
            raise RequestError(400, f"input {_shown(name)} is numeric: datatype FP64 (or "
                                    f"another number type), not {datatype!r}")
        for value in values:
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, int | float) or
                                      math.isinf(value)):  # NaN, like null, is missing
                raise RequestError(400, f"input {_shown(name)} holds {_shown(value)}, which is "
                                        "not a finite number")
        return values
    if datatype not in ("BYTES", *NUMERIC_DATATYPES, "BOOL"):
        raise RequestError(400, f"input {_shown(name)} is categorical: datatype BYTES, not "
                                f"{datatype!r}")
    for value in values:
        if isinstance(value, dict | list):
            raise RequestError(400, f"input {_shown(name)} holds {_shown(value)}, which is not "
                                    "a category")
    return values


def _same_rows(columns: dict[str, list], max_rows: int) -> dict[str, list]:
    counts = {len(values) for values in columns.values()}
    if len(counts) > 1:
        raise RequestError(400, "the inputs hold different numbers of rows: "
                                + ", ".join(f"{_shown(k)} {len(v)}" for k, v in columns.items()))
    rows = counts.pop() if counts else 0
    if rows > max_rows:
        raise RequestError(413, f"{rows} rows are more than this server takes in one request "
                                f"(--max-batch-rows {max_rows})")
    if rows == 0:
        raise RequestError(400, "the request holds no rows")
    return columns


def requested_outputs(body: dict, served: ServedModel) -> list[tuple[str, bool]]:
    """The outputs asked for (all the model has, when none is named), each with whether it is
    wanted binary. A regressor has ``predict`` only."""
    default_binary = bool(_parameters(body, "the request").get("binary_data_output", False))
    asked = body.get("outputs")
    offered = served.outputs
    if asked is None:
        return [(name, default_binary) for name in offered]
    if not isinstance(asked, list):
        raise RequestError(400, "'outputs' must be a list")
    chosen = []
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name == PREDICT_PROBA and name not in offered:
            raise RequestError(400, f"output 'predict_proba' is not served by model "
                                    f"{served.model_name!r}: it is a regression model, which "
                                    "predicts numbers and has no class probabilities; ask for "
                                    "'predict'")
        if name not in offered:
            raise RequestError(400, f"output {_shown(name)} is not one of {', '.join(offered)}")
        chosen.append((name, bool(_parameters(output, f"output {_shown(name)}").get(
            "binary_data", default_binary))))
    return chosen


def v2_response(served: ServedModel, predicted: np.ndarray, probabilities: np.ndarray,
                outputs: list[tuple[str, bool]], request_id, unfamiliar: dict | None = None,
                ignored: list[str] = ()) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it; what was
    unfamiliar or ignored goes in its ``parameters``."""
    tensors, binary = [], []
    for name, as_binary in outputs:
        if name == PREDICT:
            tensor = {"name": PREDICT, "datatype": served.label_datatype,
                      "shape": [len(predicted)]}
            values = predicted
        else:
            tensor = {"name": PREDICT_PROBA, "datatype": "FP64",
                      "shape": list(probabilities.shape)}
            values = probabilities
        if as_binary:
            raw = _binary_tensor(values, tensor["datatype"])
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            tensor["data"] = [plain(v) for v in np.ravel(values)]
        tensors.append(tensor)
    body = {"model_name": served.model_name, "model_version": served.version,
            "outputs": tensors}
    if request_id is not None:
        body["id"] = request_id
    if notes := _notes(unfamiliar, ignored):
        body["parameters"] = notes
    header = json.dumps(body, separators=(",", ":")).encode()
    if not binary:
        return header, None
    return header + b"".join(binary), len(header)


def _binary_tensor(values: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        encoded = [str(v).encode() for v in np.ravel(values)]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    return np.ascontiguousarray(values, dtype=_NUMPY_TYPES[datatype]).tobytes()


# -- V1 ----------------------------------------------------------------------------------------
def v1_columns(body: object, served: ServedModel,
               max_rows: int) -> tuple[dict[str, list], list[str]]:
    """Each feature column's values from ``{"instances": [...]}``; and the fields of object
    instances that are not features, which are ignored (an id, the label)."""
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise RequestError(400, "a V1 request is a JSON object with an 'instances' list")
    instances = body["instances"]
    if len(instances) > max_rows:
        raise RequestError(413, f"{len(instances)} rows are more than this server takes in one "
                                f"request (--max-batch-rows {max_rows})")
    features = list(served.feature_kinds)
    columns: dict[str, list] = {name: [] for name in features}
    ignored: dict[str, None] = {}
    for index, instance in enumerate(instances):
        if isinstance(instance, list):
            if len(instance) != len(features):
                raise RequestError(400, f"instance {index} has {len(instance)} values; the model "
                                        f"reads {len(features)}: {', '.join(features)}")
            instance = dict(zip(features, instance, strict=True))
        if not isinstance(instance, dict):
            raise RequestError(400, f"instance {index} is neither an object nor a list")
        ignored.update((str(key), None) for key in instance if key not in served.feature_kinds)
        missing = [name for name in features if name not in instance]
        if missing:
            raise RequestError(400, f"instance {index} lacks {', '.join(map(_shown, missing))}")
        for name in features:
            columns[name].append(instance[name])
    for name, kind in served.feature_kinds.items():
        _checked(name, "FP64" if kind == NUMERIC else "BYTES", columns[name], kind)
    return _same_rows(columns, max_rows), list(ignored)


def v1_response(predicted: np.ndarray, probabilities: np.ndarray | None = None,
                unfamiliar: dict | None = None, ignored: list[str] = ()) -> bytes:
    """``{"predictions": [...]}``: the classes, or with ``probabilities`` (KServe's
    ``PREDICT_PROBA`` convention) each row's class probabilities; what was unfamiliar or
    ignored beside them, when anything was."""
    body = {"predictions": ([[float(p) for p in row] for row in probabilities]
                            if probabilities is not None else [plain(v) for v in predicted])}
    body.update(_notes(unfamiliar, ignored))
    return json.dumps(body, separators=(",", ":")).encode()


def _notes(unfamiliar: dict | None, ignored) -> dict:
    """What a response says beside the predictions: values beyond what the model saw in
    training, by feature; the fields it ignored. Nothing when there is nothing to say."""
    notes = {}
    if unfamiliar:
        notes["unfamiliar_values"] = unfamiliar
    if ignored:
        notes["ignored_inputs"] = [str(name)[:80] for name in list(ignored)[:20]]
    return notes
