"""A stand-in Qualcomm AI Hub server for tests: the real `qai-hub` client talks to it over HTTP.

    python -m mbdeploy.testing.aihub_server --port 8765 --token T [--rate-limit N] [--state-file F]

Written against qai-hub 0.56.0 (the version pinned in pyproject.toml), from
the client's own source: `qai_hub/public_rest_api.py` (the endpoints, query
parameters and request bodies), `qai_hub/api_utils.py` (the
`application/x-protobuf` content type, the `Authorization: token ...`
header, the trailing slash of every API path, the S3-style multipart upload
that answers each PUT with an `ETag`), `qai_hub/util/session.py` (429 and
5xx are retried with backoff), and `qai_hub/public_api_pb2.py` (every
message is the client's own protobuf class, so a field we get wrong fails
to parse in the client, not silently).

It serves only what mbdeploy drives: the device list (`select=true` picks
one device, as the real server does), model creation, multipart upload and
its completion, model lookup, inference (profiling) jobs whose state
advances one step per poll, job results with a profile (raw per-inference
times, load times, memory ranges, per-layer times and compute units), and
(per-layer detail names each layer by its op's output tensor in the uploaded
.tflite, as an op profile does; this naming is our assumption, the client
passes names through as it gets them), and the faults tests need: a job on a device whose name contains "Failing"
fails with a message, the first N job submissions answer 429, a wrong
token answers 401. Jobs and models live in memory and, with --state-file,
on disk, so a restarted server still knows the jobs a resumed bench
re-attaches to. It prints `listening on PORT` once it accepts requests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PROTOBUF = "application/x-protobuf"
PART_SIZE = 5 * 1024 * 1024  # S3's minimum part size; small models arrive in one part

# Hosted devices as the real service describes them (name, OS, attributes, SoC).
DEVICES = [
    ("Samsung Galaxy S24", "14", ["chipset:qualcomm-snapdragon-8gen3", "os:android", "framework:tflite",
                                  "framework:onnx", "framework:qnn", "vendor:samsung", "format:phone"],
     "Snapdragon 8 Gen 3"),
    ("Google Pixel 8", "14", ["chipset:google-tensor-g3", "os:android", "framework:tflite", "framework:onnx",
                              "vendor:google", "format:phone"], "Google Tensor G3"),
    ("Snapdragon 8 Elite QRD", "15", ["chipset:qualcomm-snapdragon-8-elite", "os:android", "framework:tflite",
                                      "framework:onnx", "framework:qnn", "vendor:qualcomm", "format:phone"],
     "Snapdragon 8 Elite"),
    ("Failing Phone (stand-in)", "14", ["chipset:qualcomm-snapdragon-8gen2", "os:android", "framework:tflite",
                                        "vendor:test", "format:phone"], "Snapdragon 8 Gen 2"),
]
# The in-progress states a job walks through before it ends (the real service's order).
PROGRESS = ("JOB_STATE_CREATED", "JOB_STATE_PROVISIONING_DEVICE", "JOB_STATE_MEASURING_PERFORMANCE")


def _pb():
    from qai_hub import public_api_pb2

    return public_api_pb2


def graph_ops(data: bytes) -> list[tuple[str, str]]:
    """(name, type) of each op of an uploaded .tflite, in node order: the hub names a layer by its output tensor.

    A model that is not a TFLite flatbuffer (ONNX, a zipped .mlpackage) gets no per-layer detail here.
    """
    from ai_edge_litert import schema_py_generated as schema

    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        return []
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        ops.append((graph.tensors[op.outputs[0]].name.decode(), kind))
    return ops


class Hub:
    """The server's state: models, uploads, jobs; saved to a JSON file when one is given."""

    def __init__(self, token: str, rate_limit: int = 0, state_file: str | None = None, polls_per_state: int = 1):
        self.token = token
        self.rate_limit_left = rate_limit
        self.state_file = state_file
        self.polls_per_state = polls_per_state
        self.lock = threading.Lock()
        self.models: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.uploads: dict[str, bytes] = {}
        self.submissions = 0
        if state_file and os.path.exists(state_file):
            saved = json.loads(open(state_file).read())
            self.models, self.jobs, self.submissions = saved["models"], saved["jobs"], saved["submissions"]
        self.save()

    def save(self) -> None:
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as handle:
            json.dump({"models": self.models, "jobs": self.jobs, "submissions": self.submissions}, handle)
        os.replace(tmp, self.state_file)

    # --- what the client asks for -------------------------------------------------------
    def device_list(self, query: dict) -> bytes:
        pb = _pb()
        name = (query.get("name") or [""])[0]
        wanted = query.get("attributes", [])
        found = [pb.Device(name=n, os=o, attributes=a, soc_description=s) for n, o, a, s in DEVICES
                 if (not name or n == name) and all(w in a for w in wanted)]
        if (query.get("select") or ["False"])[0].lower() == "true":
            found = found[:1]
        return pb.DeviceList(devices=found, total_query_count=len(found)).SerializeToString()

    def create_model(self, body: bytes) -> bytes:
        pb = _pb()
        model = pb.Model.FromString(body)
        model_id = f"m{len(self.models) + 1:05d}"
        self.models[model_id] = {"name": model.name, "model_type": model.model_type,
                                 "is_directory": model.is_directory, "sha256": None, "bytes": 0}
        self.save()
        return pb.CreateUpdateResponse(id=model_id).SerializeToString()

    def upload_urls(self, base: str, model_id: str, query: dict) -> bytes:
        pb = _pb()
        size = int((query.get("file_size") or ["0"])[0])
        parts = max(1, -(-size // PART_SIZE))
        urls = [f"{base}/upload/{model_id}/{index}" for index in range(parts)]
        return pb.FileUploadResponse(multipart_url=pb.FileMultipartUploadURL(
            urls=urls, upload_id=f"u-{model_id}", max_part_size=PART_SIZE)).SerializeToString()

    def complete_upload(self, model_id: str, body: bytes) -> bytes:
        pb = _pb()
        done = pb.FileMultipartUploadComplete.FromString(body)
        data = b"".join(self.uploads.pop(f"{model_id}/{index}", b"") for index in range(len(done.etags)))
        self.models[model_id].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), complete=True,
                                     ops=graph_ops(data))
        self.save()
        return pb.CreateUpdateResponse(id=model_id).SerializeToString()

    def model(self, model_id: str) -> bytes:
        pb = _pb()
        model = self.models[model_id]
        return pb.Model(model_id=model_id, name=model["name"], model_type=model["model_type"],
                        is_directory=model["is_directory"],
                        file_upload_complete=bool(model.get("complete"))).SerializeToString()

    def submit(self, body: bytes) -> tuple[int, bytes]:
        pb = _pb()
        if self.rate_limit_left > 0:
            self.rate_limit_left -= 1
            return 429, json.dumps({"detail": "Too many jobs submitted. Please wait before submitting more."}).encode()
        job = pb.Job.FromString(body).inference_job
        if job.model.model_id not in self.models:
            return 404, json.dumps({"detail": f"Model ID '{job.model.model_id}' could not be found."}).encode()
        self.submissions += 1
        job_id = f"j{self.submissions:07d}"
        self.jobs[job_id] = {"model_id": job.model.model_id, "name": job.name, "device": job.device.name,
                             "device_os": job.device.os, "attributes": list(job.device.attributes),
                             "options": job.options, "profile": job.is_profiling_on, "polls": 0}
        self.save()
        return 200, pb.CreateUpdateResponse(id=job_id).SerializeToString()

    def _device_of(self, job: dict) -> tuple[str, str, list[str]]:
        for name, os_version, attributes, _ in DEVICES:
            if (not job["device"] or name == job["device"]) and all(a in attributes for a in job["attributes"]):
                return name, os_version, attributes
        return job["device"], job["device_os"], job["attributes"]

    def _state(self, job: dict) -> str:
        step = job["polls"] // self.polls_per_state
        if step < len(PROGRESS):
            return PROGRESS[step]
        return "JOB_STATE_FAILED" if "Failing" in self._device_of(job)[0] else "JOB_STATE_DONE"

    def job(self, job_id: str) -> bytes:
        pb = _pb()
        job = self.jobs[job_id]
        state = self._state(job)
        job["polls"] += 1
        self.save()
        name, os_version, attributes = self._device_of(job)
        inference = pb.InferenceJob(
            inference_job_id=job_id, name=job["name"], job_state=pb.JobState.Value(state),
            model=pb.Model(model_id=job["model_id"], name=self.models[job["model_id"]]["name"]),
            device=pb.Device(name=name, os=os_version, attributes=attributes), options=job["options"],
            is_profiling_on=job["profile"],
            failure_reason=("Failed to profile the model: the device ran out of memory while loading it."
                            if state == "JOB_STATE_FAILED" else ""))
        return pb.Job(inference_job=inference).SerializeToString()

    def result(self, job_id: str) -> bytes:
        """A profile whose figures derive from the uploaded model's bytes: stable across calls, never constant."""
        pb = _pb()
        job = self.jobs[job_id]
        model = self.models[job["model_id"]]
        seed = int((model["sha256"] or "0" * 8)[:8], 16)
        base_us = 800 + model["bytes"] // 2000 + seed % 97
        times = [base_us + (i * 37 + seed) % 61 for i in range(100)]
        layers = []
        units = ("COMPUTE_UNIT_NPU", "COMPUTE_UNIT_NPU", "COMPUTE_UNIT_GPU", "COMPUTE_UNIT_CPU")
        for index, (name, kind) in enumerate(model.get("ops") or []):
            layers.append(pb.LayerDetail(name=name, layer_type_name=kind, id=str(index),
                                         compute_unit=pb.ComputeUnit.Value(units[index % len(units)]),
                                         execution_time=max(1, base_us // 30) + index % 7))

        def usage(low: int, high: int):
            return pb.ProfileDetail.MemoryUsage(increase=pb.Range(lower=low // 2, upper=high // 2),
                                                peak=pb.Range(lower=low, upper=high))

        detail = pb.ProfileDetail(
            major_version=1, minor_version=2, execution_time=sorted(times)[len(times) // 2],
            after_execution_peak_memory=9_000_000, cold_load_time=base_us * 40, warm_load_time=base_us * 12,
            compile_time=base_us * 300, after_cold_load_peak_memory=20_000_000, after_warm_load_peak_memory=18_000_000,
            after_compile_peak_memory=60_000_000, layer_details=layers,
            compile_memory=usage(40_000_000, 60_000_000), cold_load_memory=usage(12_000_000, 20_000_000),
            warm_load_memory=usage(10_000_000, 18_000_000), execution_memory=usage(6_000_000, 9_000_000),
            all_compile_times=[base_us * 300], all_cold_load_times=[base_us * 40],
            all_warm_load_times=[base_us * 12, base_us * 12 + 5], all_execution_times=times)
        return pb.JobResult(inference_job_result=pb.InferenceJobResult(
            inference_job_id=job_id, detail=detail)).SerializeToString()


class Handler(BaseHTTPRequestHandler):
    hub: Hub  # set on the subclass the server builds
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        return  # quiet: tests read stdout for the port line only

    def _send(self, status: int, body: bytes = b"", content_type: str = PROTOBUF, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"token {self.hub.token}":
            return True
        self._send(401, json.dumps({"detail": "Invalid token."}).encode(), "application/json")
        return False

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path
        body = self._body() if method in ("POST", "PUT", "PATCH") else b""
        hub = self.hub
        with hub.lock:
            upload = re.fullmatch(r"/upload/(m\d+)/(\d+)", path)
            if upload and method == "PUT":  # the pre-signed part URL: no API token, as on S3
                hub.uploads[f"{upload[1]}/{upload[2]}"] = body
                return self._send(200, b"", "text/plain", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
            if not path.startswith("/api/v1/") or not path.endswith("/"):
                return self._send(404, b"not found", "text/plain")
            if not self._authorized():
                return None
            parts = path[len("/api/v1/"):-1].split("/")
            base = f"http://{self.headers.get('Host')}"
            try:
                if parts == ["devices"] and method == "GET":
                    return self._send(200, hub.device_list(query))
                if parts == ["models"] and method == "POST":
                    return self._send(200, hub.create_model(body))
                if len(parts) == 3 and parts[0] == "models" and parts[2] == "multipart_upload":
                    if method == "GET":
                        return self._send(200, hub.upload_urls(base, parts[1], query))
                    return self._send(200, hub.complete_upload(parts[1], body))
                if len(parts) == 2 and parts[0] == "models" and method == "GET":
                    return self._send(200, hub.model(parts[1]))
                if parts == ["jobs"] and method == "POST":
                    status, answer = hub.submit(body)
                    return self._send(status, answer, PROTOBUF if status == 200 else "application/json")
                if len(parts) == 2 and parts[0] == "jobs" and method == "GET":
                    return self._send(200, hub.job(parts[1]))
                if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "result" and method == "GET":
                    return self._send(200, hub.result(parts[1]))
            except KeyError:
                return self._send(404, json.dumps({"detail": "Not found."}).encode(), "application/json")
        return self._send(404, json.dumps({"detail": f"no route {method} {path}"}).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")


def serve(port: int, hub: Hub) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"hub": hub})
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="stand-in-token")
    parser.add_argument("--rate-limit", type=int, default=0, help="answer the first N job submissions with 429")
    parser.add_argument("--state-file", default=None, help="keep models and jobs here across restarts")
    parser.add_argument("--polls-per-state", type=int, default=1, help="status polls a job spends in each state")
    args = parser.parse_args(argv)
    server = serve(args.port, Hub(args.token, args.rate_limit, args.state_file, args.polls_per_state))
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
