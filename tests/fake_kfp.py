"""A local HTTP server that speaks the few KFP v2beta1 REST calls ``kfp.Client`` makes for us.

It keeps pipelines, versions, experiments, runs and recurring runs in memory, answers in the
API's JSON, and records every request (method, path, query, JSON body, headers) for assertions.
"""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import parse_qs, urlsplit

from tests.fake_http import JsonServer

API = "/apis/v2beta1"


class FakeKfp:
    def __init__(self):
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._http = JsonServer(self.handle, ("GET", "POST", "DELETE"))
        self.url = self._http.url

    def close(self):
        self._http.close()

    def calls(self, method: str, path_prefix: str) -> list[dict]:
        return [r for r in self.requests
                if r["method"] == method and r["path"].startswith(API + path_prefix)]

    # -- the API -------------------------------------------------------------------------------
    def handle(self, method, raw_path, body, headers):
        parts = urlsplit(raw_path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        is_json = headers.get("content-type", "").startswith("application/json")
        record = {"method": method, "path": path, "query": query, "headers": headers,
                  "json": json.loads(body) if body and is_json else None,
                  "upload": _uploaded_yaml(body) if b"uploadfile" in body else None}
        self.requests.append(record)
        name_filter = _display_name_filter(query.get("filter"))

        if method == "GET" and path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and path == f"{API}/pipelines":
            found = [p for p in self.pipelines.values()
                     if name_filter is None or p["display_name"] == name_filter]
            return 200, {"pipelines": found, "total_size": len(found)}
        if method == "POST" and path == f"{API}/pipelines/upload":
            pipeline = {"pipeline_id": _id(), "display_name": query.get("name")}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if method == "POST" and path == f"{API}/pipelines/upload_version":
            version = {"pipeline_id": query["pipelineid"], "pipeline_version_id": _id(),
                       "display_name": query.get("name")}
            self.versions[version["pipeline_version_id"]] = version
            return 200, version
        if method == "GET" and path == f"{API}/experiments":
            found = [e for e in self.experiments.values()
                     if name_filter is None or e["display_name"] == name_filter]
            return 200, {"experiments": found, "total_size": len(found)}
        if method == "POST" and path == f"{API}/experiments":
            experiment = {**record["json"], "experiment_id": _id()}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if method == "POST" and path == f"{API}/runs":
            run = {**record["json"], "run_id": _id(), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if method == "POST" and path == f"{API}/recurringruns":
            recurring = {**record["json"], "recurring_run_id": _id(), "status": "ENABLED"}
            self.recurring_runs[recurring["recurring_run_id"]] = recurring
            return 200, recurring
        if method == "GET" and path == f"{API}/recurringruns":
            found = [r for r in self.recurring_runs.values()
                     if r.get("experiment_id") == query.get("experiment_id")]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        match = re.fullmatch(rf"{API}/recurringruns/([^/:]+)(:disable)?", path)
        if match and match.group(1) in self.recurring_runs:
            if method == "DELETE":
                del self.recurring_runs[match.group(1)]
                return 200, {}
            if method == "POST" and match.group(2):
                self.recurring_runs[match.group(1)]["status"] = "DISABLED"
                return 200, {}
        return 404, {"error": f"fake KFP does not know {method} {path}", "code": 5}


def _id() -> str:
    return uuid.uuid4().hex


def _display_name_filter(raw: str | None) -> str | None:
    if not raw:
        return None
    for predicate in json.loads(raw).get("predicates", []):
        if predicate.get("key") in ("display_name", "name"):
            return predicate.get("string_value") or predicate.get("stringValue")
    return None


def _uploaded_yaml(body: bytes) -> str:
    """The text of the multipart part named uploadfile."""
    start = body.find(b"\r\n\r\n", body.find(b'name="uploadfile"')) + 4
    end = body.find(b"\r\n--", start)
    return body[start:end].decode(errors="replace")
