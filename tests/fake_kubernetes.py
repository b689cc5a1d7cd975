"""A fake Kubernetes API for KServe InferenceServices: create, get and merge-patch, on a real
HTTP server on loopback, recording every call; a test sets when a service becomes Ready, or
makes the next call of a method fail."""

from __future__ import annotations

import copy
import json
import re

from tests.fake_http import JsonServer

PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices"
                  r"(?:/([^/?]+))?")


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKubernetes:
    """The fake server. ``ready_after``: how many GETs after a create or patch until the service
    reports Ready (None: never). ``fail_next``: method -> HTTP status for its next call."""

    def __init__(self, ready_after: int | None = 1):
        self.services: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, str, dict | None]] = []
        self.ready_after, self.fail_next = ready_after, {}
        self._gets_since_change: dict[tuple[str, str], int] = {}
        self._http = JsonServer(self._respond, ("GET", "POST", "PATCH"))
        self.url = self._http.url

    def _respond(self, method, path, raw_body, headers):
        body = json.loads(raw_body) if raw_body else None
        self.calls.append((method, path, body, headers.get("content-type", "")))
        match = PATH.match(path)
        if not match:
            return 404, {"kind": "Status", "code": 404}
        if method in self.fail_next:
            status = self.fail_next.pop(method)
            return status, {"kind": "Status", "code": status, "reason": "InternalError"}
        return self.handle(method, match.group(1), match.group(2), body)

    def handle(self, method, namespace, name, body):
        if method == "POST":
            name = body["metadata"]["name"]
            if (namespace, name) in self.services:
                return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
            self.services[(namespace, name)] = merge_patch(body, {"metadata": {"generation": 1}})
            self._gets_since_change[(namespace, name)] = 0
            return 201, self.services[(namespace, name)]
        key = (namespace, name)
        if key not in self.services:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        if method == "PATCH":
            service = merge_patch(self.services[key], body)
            service["metadata"]["generation"] = self.services[key]["metadata"]["generation"] + 1
            service.pop("status", None)
            self.services[key] = service
            self._gets_since_change[key] = 0
            return 200, service
        self._gets_since_change[key] += 1
        service = self.services[key]
        generation = service["metadata"]["generation"]
        ready = (self.ready_after is not None
                 and self._gets_since_change[key] > self.ready_after)
        service["status"] = {"observedGeneration": generation, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False",
             "reason": "Ready" if ready else "RevisionMissing",
             "message": "" if ready else "Revision is not ready yet"}]}
        return 200, service

    def kubeconfig(self, folder) -> str:
        """A kubeconfig file pointing at this server (what a user's kubectl has)."""
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        return str(path)

    def close(self):
        self._http.close()
