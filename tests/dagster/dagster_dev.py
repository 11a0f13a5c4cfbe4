"""Drive a real ``dagster dev`` (webserver + daemon + code server) over HTTP/GraphQL from tests.

``dagster dev`` started from a non-interactive shell ignores SIGINT, so the child resets its signal
handlers before exec and is stopped by signalling its process group.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LOCATION = "example_project.definitions"
REPOSITORY = "__repository__"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset_signals() -> None:
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class DagsterDev:
    def __init__(self, workspace: Path, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.workspace, self.cwd, self.env, self.log_path = workspace, cwd, env, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> None:
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)]
        self._log = self.log_path.open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_reset_signals,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log()}")
            if self._server_info_ok() and self.location_status() == "LOADED":
                self.startup_seconds = time.perf_counter() - started
                return
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev not ready after {timeout}s:\n{self.log()[-5000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the process group, wait; returns the exit code (SIGKILL as a last resort)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                self._log.close()
                raise
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP ------------------------------------------------------------------------------------
    def _server_info_ok(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            payload = json.loads(r.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    # -- workspace -------------------------------------------------------------------------------
    def location_status(self) -> str | None:
        try:
            data = self.graphql(
                "query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, RuntimeError):
            return None
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] == LOCATION:
                error = entry.get("locationOrLoadError") or {}
                if error.get("__typename") == "PythonError":
                    raise RuntimeError(f"code location failed to load: {error['message']}")
                return entry["loadStatus"]
        return None

    def reload(self, timeout: float = 120) -> float:
        started = time.perf_counter()
        data = self.graphql(
            "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename "
            "... on WorkspaceLocationEntry { loadStatus } ... on PythonError { message } } }",
            {"name": LOCATION},
        )
        result = data["reloadRepositoryLocation"]
        if result["__typename"] != "WorkspaceLocationEntry":
            raise RuntimeError(f"reload failed: {result}")
        deadline = time.monotonic() + timeout
        while self.location_status() != "LOADED":
            if time.monotonic() > deadline:
                raise TimeoutError("code location did not reload")
            time.sleep(0.5)
        return time.perf_counter() - started

    # -- runs ------------------------------------------------------------------------------------
    def launch(
        self, asset_paths: list[list[str]], *, job: str = "__ASSET_JOB", tags: dict[str, str] | None = None
    ) -> str:
        """Launch a run of ``job`` (the assets of ``asset_paths`` for the asset job); ``tags`` such as
        ``{"dagster/partition": "train"}`` go on the run."""
        selector: dict[str, Any] = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "pipelineName": job,
        }
        if asset_paths:
            selector["assetSelection"] = [{"path": p} for p in asset_paths]
        params: dict[str, Any] = {"selector": selector}
        if tags:
            params["executionMetadata"] = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        data = self.graphql(
            "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } "
            "... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }",
            {"p": params},
        )
        result = data["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun failed: {result}")
        return str(result["run"]["runId"])

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )
        return str(data["runOrError"]["status"])

    def wait_run(self, run_id: str, timeout: float = 240) -> tuple[str, float]:
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status, time.perf_counter() - started
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} still running after {timeout}s")

    def runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        data = self.graphql(
            "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId status "
            "tags { key value } assetSelection { path } } } } }",
            {"f": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        return list(data["runsOrError"]["results"])

    # -- assets ----------------------------------------------------------------------------------
    def stale_statuses(self) -> dict[str, str]:
        data = self.graphql("query { assetNodes { assetKey { path } staleStatus } }")
        return {"/".join(n["assetKey"]["path"]): n["staleStatus"] for n in data["assetNodes"]}

    def latest_metadata(self, path: list[str]) -> dict[str, Any]:
        data = self.graphql(
            "query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset { assetMaterializations(limit: 1) "
            "{ runId metadataEntries { label __typename ... on IntMetadataEntry { intValue } "
            "... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } "
            "... on MarkdownMetadataEntry { mdStr } } } } } }",
            {"k": {"path": path}},
        )
        (mat,) = data["assetOrError"]["assetMaterializations"]
        out: dict[str, Any] = {"runId": mat["runId"]}
        for e in mat["metadataEntries"]:
            out[e["label"]] = e.get("intValue", e.get("text", e.get("mdStr", e.get("jsonString"))))
            if e["__typename"] == "JsonMetadataEntry":
                out[e["label"]] = json.loads(e["jsonString"])
        return out

    def check_statuses(self, path: list[str]) -> dict[str, str]:
        """Check name -> status of its execution for the asset's latest materialization."""
        data = self.graphql(
            "query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode { assetChecksOrError "
            "{ ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } } }",
            {"k": {"path": path}},
        )
        checks = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
        return {
            c["name"]: (c["executionForLatestMaterialization"] or {}).get("status", "NONE") for c in checks
        }

    def partitions(self, path: list[str]) -> dict[str, Any]:
        """Partition stats and the partitions by status of a partitioned asset, as the UI shows them."""
        data = self.graphql(
            "query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode { "
            "partitionStats { numMaterialized numPartitions numFailed } "
            "assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions "
            "unmaterializedPartitions failedPartitions } } } } }",
            {"k": {"path": path}},
        )
        node = data["assetNodeOrError"]
        return {**node["partitionStats"], **node["assetPartitionStatuses"]}

    def data_version(self, path: list[str], partition: str | None = None) -> str | None:
        data = self.graphql(
            "query($k: AssetKeyInput!, $p: String) { assetNodeOrError(assetKey: $k) { ... on AssetNode "
            "{ dataVersion(partition: $p) } } }",
            {"k": {"path": path}, "p": partition},
        )
        return data["assetNodeOrError"]["dataVersion"]

    def latest_materialization_tags(self, path: list[str]) -> dict[str, str]:
        data = self.graphql(
            "query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset { assetMaterializations(limit: 1) "
            "{ runId tags { key value } } } } }",
            {"k": {"path": path}},
        )
        (mat,) = data["assetOrError"]["assetMaterializations"]
        return {"runId": mat["runId"], **{t["key"]: t["value"] for t in mat["tags"]}}

    # -- sensors ---------------------------------------------------------------------------------
    def start_sensor(self, name: str) -> None:
        data = self.graphql(
            "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename "
            "... on Sensor { sensorState { status } } ... on PythonError { message } } }",
            {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}},
        )
        if data["startSensor"]["__typename"] != "Sensor":
            raise RuntimeError(f"startSensor failed: {data}")

    def stop_sensor(self, name: str) -> None:
        data = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { id } } }",
            {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}},
        )
        sensor_id = data["sensorOrError"]["id"]
        data = self.graphql(
            "mutation($id: String!) { stopSensor(id: $id) { __typename ... on StopSensorMutationResult "
            "{ instigationState { status } } ... on PythonError { message } } }",
            {"id": sensor_id},
        )
        if data["stopSensor"]["__typename"] != "StopSensorMutationResult":
            raise RuntimeError(f"stopSensor failed: {data}")

    def sensor_status(self, name: str) -> str:
        data = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState { status } } } }",
            {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}},
        )
        return str(data["sensorOrError"]["sensorState"]["status"])
