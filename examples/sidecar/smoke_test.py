"""Smoke test for the deployment files (no container engine here, so no images are built):

1. kubernetes.yaml parses and is wired consistently: the model server and the agent share the
   socket volume, the SDK's endpoint is the agent's socket, the agent's collector URL is the
   collector Service, Service ports name real container ports, secrets are mounted/referenced;
2. every NEUROCLOAK_* variable in it is one the binaries really read (from their --help);
3. the collector and the agent are started with exactly the manifest's environment (paths moved
   into a temp dir, ports made random, secrets filled in) and a window logged through the
   Python SDK over the socket reaches the collector;
4. Dockerfile.collector passes hadolint and agrees with the manifest (ports, non-root user).

    python examples/sidecar/smoke_test.py     (scripts/test-examples.sh runs it)
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs needed to run; only mypy cares

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from localstack import Process, StackError, binary, run_json, wait_for  # noqa: E402

# Read by the binaries outside their flag parsers (tracing filter, the collector's master key)
# or by the SDK inside the model container.
NOT_FLAGS = {"NEUROCLOAK_LOG", "NEUROCLOAK_MASTER_KEY", "NEUROCLOAK_AGENT", "NEUROCLOAK_PROJECT"}


def load() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((HERE / "kubernetes.yaml").read_text()) if d]
    by_name = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    assert len(by_name) == len(docs), "duplicate kind/name in kubernetes.yaml"
    return by_name


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def mounts_of(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def check_wiring(k8s: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    model_pod = k8s["Deployment/churn-model"]["spec"]["template"]["spec"]
    (agent,) = [c for c in model_pod["initContainers"] if c["name"] == "neurocloak-agent"]
    assert agent.get("restartPolicy") == "Always", "the agent must be a native sidecar"
    (model,) = model_pod["containers"]
    volumes = {v["name"]: v for v in model_pod["volumes"]}
    a_env, m_env = env_of(agent), env_of(model)
    a_mounts, m_mounts = mounts_of(agent), mounts_of(model)

    # The socket lives in a volume both containers mount at the same place.
    uds = a_env["NEUROCLOAK_AGENT_UDS_PATH"]["value"]
    shared = [v for v in a_mounts if a_mounts[v] == m_mounts.get(v) and uds.startswith(a_mounts[v] + "/")]
    assert shared and "emptyDir" in volumes[shared[0]], (uds, a_mounts, m_mounts)
    assert m_env["NEUROCLOAK_AGENT"]["value"] == f"unix://{uds}"
    # Queue on its own volume; API key from a mounted secret, not a literal.
    data_dir = a_env["NEUROCLOAK_AGENT_DATA_DIR"]["value"]
    assert any(data_dir == p for v, p in a_mounts.items() if v not in shared), data_dir
    key_file = a_env["NEUROCLOAK_AGENT_API_KEY_FILE"]["value"]
    key_volume = [v for v, p in a_mounts.items() if key_file.startswith(p + "/")]
    assert key_volume and "secret" in volumes[key_volume[0]], key_file
    assert "NEUROCLOAK_AGENT_API_KEY" not in a_env, "API key as a literal env value"

    collector_pod = k8s["Deployment/neurocloak-collector"]["spec"]["template"]["spec"]
    (collector,) = collector_pod["containers"]
    c_env = env_of(collector)
    for secret in ("NEUROCLOAK_STORAGE", "NEUROCLOAK_MASTER_KEY"):
        assert "secretKeyRef" in c_env[secret]["valueFrom"], secret
    ports = {p["name"]: p["containerPort"] for p in collector["ports"]}
    assert c_env["NEUROCLOAK_GRPC_ADDR"]["value"].endswith(f":{ports['grpc']}")
    assert c_env["NEUROCLOAK_HTTP_ADDR"]["value"].endswith(f":{ports['http']}")
    service = k8s["Service/neurocloak-collector"]
    assert service["spec"]["selector"] == k8s["Deployment/neurocloak-collector"]["spec"]["selector"]["matchLabels"]
    for p in service["spec"]["ports"]:
        assert p["targetPort"] in ports, p
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["targetPort"] == "grpc")
    namespace = service["metadata"]["namespace"]
    expected = f"http://{service['metadata']['name']}.{namespace}.svc:{grpc_port}"
    assert a_env["NEUROCLOAK_AGENT_COLLECTOR"]["value"] == expected, (a_env["NEUROCLOAK_AGENT_COLLECTOR"], expected)
    for pod in (model_pod, collector_pod):
        assert pod["securityContext"]["runAsNonRoot"] is True
    return agent, collector


def check_env_names(agent: dict[str, Any], collector: dict[str, Any]) -> None:
    for exe, args, container in (("neurocloak-agent", [], agent), ("neurocloak-collector", ["serve"], collector)):
        help_text = subprocess.run([str(binary(exe)), *args, "--help"], capture_output=True, text=True,
                                   timeout=30, check=True).stdout
        known = set(re.findall(r"\[env: (NEUROCLOAK_\w+)", help_text))
        unknown = [n for n in env_of(container) if n.startswith("NEUROCLOAK_") and n not in known | NOT_FLAGS]
        assert not unknown, f"{exe} does not read {unknown}"


def concrete_env(container: dict[str, Any], paths: dict[str, Path], secrets: dict[str, str]) -> dict[str, str]:
    """The container's env as the process would see it, with its paths moved into a temp dir,
    addresses on random loopback ports and secret/fieldRef values filled in."""
    env: dict[str, str] = {}
    for name, e in env_of(container).items():
        if "value" in e:
            value = str(e["value"])
            for prefix, local in paths.items():
                value = value.replace(prefix, str(local))
            value = re.sub(r"^(0\.0\.0\.0|127\.0\.0\.1):\d+$", "127.0.0.1:0", value)
        elif "secretKeyRef" in e["valueFrom"]:
            value = secrets[name]
        else:
            value = f"smoke-{e['valueFrom']['fieldRef']['fieldPath'].replace('.', '-')}"
        env[name] = value
    env["NEUROCLOAK_LOG"] = os.environ.get("NEUROCLOAK_LOG", "warn")
    return env


def run_manifest_env(agent: dict[str, Any], collector: dict[str, Any]) -> str:
    work = Path(tempfile.mkdtemp(prefix="neurocloak-sidecar-"))
    procs: list[Process] = []
    try:
        data = work / "collector"
        store = ["--storage", f"sqlite://{data}/neurocloak.db", "--data-dir", str(data)]
        exe = str(binary("neurocloak-collector"))
        key = run_json([exe, "admin", "bootstrap", "--org", "k8s", "--project", "shop", *store])["api_key"]
        secrets = {
            "NEUROCLOAK_STORAGE": f"sqlite://{data}/neurocloak.db",
            "NEUROCLOAK_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        c_env = concrete_env(collector, {"/var/lib/neurocloak": data}, secrets)
        procs.append(Process("collector", [exe, *collector["args"]], work, c_env))
        fields = procs[-1].wait_listening()

        a_env = concrete_env(agent, {"/var/run/neurocloak": work / "run", "/var/lib/neurocloak-agent": work / "queue",
                                     "/etc/neurocloak": work / "etc"}, {})
        a_env["NEUROCLOAK_AGENT_COLLECTOR"] = f"http://{fields['grpc']}"  # the Service, locally
        (work / "run").mkdir()
        (work / "etc").mkdir()
        (work / "etc/api-key").write_text(key + "\n")  # as a mounted secret file, newline included
        procs.append(Process("agent", [str(binary("neurocloak-agent"))], work, a_env))
        agent_fields = procs[-1].wait_listening()
        assert agent_fields["uds"] == str(work / "run/agent.sock"), agent_fields

        import neurocloak  # the model container's side: only NEUROCLOAK_AGENT is configured

        os.environ["NEUROCLOAK_AGENT"] = f"unix://{agent_fields['uds']}"
        mon = neurocloak.Monitor(project="shop", model="churn", version="k8s", task="regression",
                                 window_seconds=1)
        for i in range(25):
            mon.log({"x": float(i)}, float(i) / 2)
        assert mon.shutdown(10.0) and mon.stats()["dropped"] == 0, mon.stats()

        read = run_json([exe, "admin", "create-key", "--project", "shop", "--name", "r", "--scopes", "read", *store])

        def rows() -> int | None:
            req = urllib.request.Request(f"http://{fields['http']}/api/v1/projects/shop/models/churn/windows",
                                         headers={"Authorization": f"Bearer {read['api_key']}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                n = sum(int(w["rows"]) for w in json.loads(r.read())["items"])
            return n if n >= 25 else None

        got = wait_for("the window at the collector", rows, timeout=30)
        assert got == 25, got
        return f"25 rows through agent and collector started with the manifest's env ({len(a_env)} + {len(c_env)} vars)"
    except BaseException:
        for p in procs:
            print(f"--- {p.name}\n{p.tail()}", file=sys.stderr)
        raise
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


def check_dockerfile(collector: dict[str, Any]) -> str:
    text = (HERE / "Dockerfile.collector").read_text()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == {p["containerPort"] for p in collector["ports"]}, exposed
    (user,) = re.findall(r"^USER (\d+)", text, re.M)
    assert user != "0" and int(user) == 10001, user
    assert len(re.findall(r"^FROM ", text, re.M)) == 2, "expected a builder and a runtime stage"
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not hadolint:
        return "hadolint not installed: lint skipped"
    out = subprocess.run([hadolint, str(HERE / "Dockerfile.collector")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return "hadolint clean"


def main() -> None:
    started = time.monotonic()
    agent, collector = check_wiring(load())
    check_env_names(agent, collector)
    ran = run_manifest_env(agent, collector)
    lint = check_dockerfile(collector)
    print(f"sidecar: ok — manifest wiring and env names checked; {ran}; Dockerfile.collector {lint} "
          f"({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except StackError as e:
        sys.exit(f"sidecar smoke test: {e}")
