"""The Helm chart, rendered without Helm (deploy/helm_render.py): values schema, both engines, the kustomize base.

Every rendering is checked against the Kubernetes schemas with kubernetes-validate, except the two custom
resources (ServiceMonitor, LeaderWorkerSet), whose schemas live in their operators.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from .conftest import DEPLOY

K8S_VERSION = "1.30.0"
CUSTOM_KINDS = {"ServiceMonitor", "LeaderWorkerSet"}
VLLM = {"engine": "vllm"}
MULTI_NODE = {
    "engine": "vllm",
    "vllm": {
        "multiNode": {"enabled": True, "nodes": 2},
        "modelCache": {"size": "2Ti", "accessMode": "ReadWriteMany"},
        "tensorParallelSize": 8,
        "pipelineParallelSize": 2,
        "gpusPerPod": 8,
    },
}


def render(helm, overrides=None):
    return helm.render_chart(helm.chart_values(overrides))


def by_kind(objects) -> dict:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def validate(objects) -> None:
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# --- values.schema.json ------------------------------------------------------------------------------------------


def test_default_values_meet_the_schema(helm):
    helm.validate_values(helm.chart_values())


@pytest.mark.parametrize(
    "overrides, where",
    [
        ({"engine": "llama"}, "engine"),
        ({"name": "Qcoder_1"}, "name"),
        ({"service": {"port": 0}}, "service.port"),
        ({"service": {"port": "8000"}}, "service.port"),
        ({"qcoder": {"maxNumSeqs": 0}}, "qcoder.maxNumSeqs"),
        ({"qcoder": {"modelCache": {"size": "ten gigs"}}}, "qcoder.modelCache.size"),
        ({"qcoder": {"modelCache": {"accessMode": "ReadWriteSometimes"}}}, "qcoder.modelCache.accessMode"),
        ({"qcoder": {"image": {"pullPolicy": "Sometimes"}}}, "qcoder.image.pullPolicy"),
        ({"vllm": {"tensorParallelSize": 0}}, "vllm.tensorParallelSize"),
        ({"vllm": {"gpuMemoryUtilization": 1.5}}, "vllm.gpuMemoryUtilization"),
        ({"vllm": {"yarn": {"factor": 1}}}, "vllm.yarn.factor"),
        ({"vllm": {"multiNode": {"nodes": 1}}}, "vllm.multiNode.nodes"),
        ({"vllm": {"extraArgs": "--enforce-eager"}}, "vllm.extraArgs"),
        ({"vllm": {"quantization": "fp8 --trust-remote-code"}}, "vllm.quantization"),
        ({"vllm": {"tensorParalelSize": 2}}, "vllm"),  # a typo is an unknown key, not silently ignored
        ({"apiKey": {"value": "baked-in"}}, "apiKey"),  # there is no way to put a key into values
    ],
)
def test_schema_rejects_bad_values(helm, overrides, where):
    with pytest.raises(helm.TemplateError, match=f"values don't meet values.schema.json: {where}:"):
        render(helm, overrides)


# --- rendering ----------------------------------------------------------------------------------------------------


def test_default_rendering_is_qcoder_on_cpu(helm):
    objects = render(helm)
    validate(objects)
    assert set(by_kind(objects)) == {
        ("Secret", "qcoder-api-key"),
        ("PersistentVolumeClaim", "qcoder-models"),
        ("Deployment", "qcoder"),
        ("Service", "qcoder"),
        ("NetworkPolicy", "qcoder"),
    }
    pod = by_kind(objects)[("Deployment", "qcoder")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [c["args"] for c in pod["initContainers"]] == [["pull", "--quiet"]]
    server = pod["containers"][0]
    assert {p: server[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {
        "startupProbe": "/health",
        "readinessProbe": "/health",
        "livenessProbe": "/health",
    }
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["QCODER_API_KEY_FILE"] == "/run/secrets/qcoder/api-key"
    assert "QCODER_API_KEY" not in env


def test_generated_api_key_is_random_and_never_in_values(helm):
    keys = [base64.b64decode(by_kind(render(helm))[("Secret", "qcoder-api-key")]["data"]["api-key"]) for _ in "ab"]
    assert len(keys[0]) == 40 and keys[0].isalnum() and keys[0] != keys[1]


def test_existing_secret_replaces_the_generated_one(helm):
    objects = by_kind(render(helm, {"apiKey": {"existingSecret": "team-key"}}))
    assert not any(kind == "Secret" for kind, _ in objects)
    volumes = objects[("Deployment", "qcoder")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "api-key", "secret": {"secretName": "team-key"}} in volumes


def test_autoscaling_and_monitoring(helm):
    objects = render(
        helm, {"qcoder": {"autoscaling": {"enabled": True}}, "metrics": {"serviceMonitor": {"enabled": True}}}
    )
    validate(objects)
    found = by_kind(objects)
    hpa = found[("HorizontalPodAutoscaler", "qcoder")]["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "qcoder_num_requests_waiting"
    assert "replicas" not in found[("Deployment", "qcoder")]["spec"]  # the HPA owns it
    monitor = found[("ServiceMonitor", "qcoder")]["spec"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert monitor["selector"]["matchLabels"].items() <= found[("Service", "qcoder")]["metadata"]["labels"].items()


def serving_pod_labels(objects) -> dict:
    """Labels of the pods that answer the API: a Deployment's pods, or a LeaderWorkerSet's leaders."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            return obj["spec"]["template"]["metadata"]["labels"]
        if obj["kind"] == "LeaderWorkerSet":
            return obj["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]["labels"]
    raise AssertionError("no serving workload")


@pytest.mark.parametrize("overrides", [None, VLLM, MULTI_NODE], ids=["qcoder", "vllm", "vllm-multi-node"])
def test_every_engine_has_the_same_service_and_key(helm, overrides):
    """Clients point at http://qcoder:8000/v1 with the key from qcoder-api-key, whatever runs behind it."""
    objects = render(helm, overrides)
    validate(objects)
    service = by_kind(objects)[("Service", "qcoder")]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= serving_pod_labels(objects).items()
    assert ("Secret", "qcoder-api-key") in by_kind(objects)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet")]
    assert referenced_secrets(workloads) == {"qcoder-api-key"}


def referenced_secrets(node) -> set[str]:
    """Secret names used by secret volumes and secretKeyRef environment variables anywhere under `node`."""
    found = set()
    if isinstance(node, dict):
        if "secretName" in node:
            found.add(node["secretName"])
        if "secretKeyRef" in node:
            found.add(node["secretKeyRef"]["name"])
        for value in node.values():
            found |= referenced_secrets(value)
    elif isinstance(node, list):
        for value in node:
            found |= referenced_secrets(value)
    return found


def vllm_container(objects) -> dict:
    for obj in objects:
        if obj["kind"] == "Deployment":
            return obj["spec"]["template"]["spec"]["containers"][0]
        if obj["kind"] == "LeaderWorkerSet":
            return obj["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    raise AssertionError("no vLLM workload")


def test_vllm_has_the_flags_qwen3_coder_needs(helm):
    overrides = {
        "engine": "vllm",
        "vllm": {
            "model": "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
            "tensorParallelSize": 8,
            "expertParallel": True,
            "maxModelLen": 1048576,
            "yarn": {"enabled": True},
            "gpusPerPod": 8,
            "extraArgs": ["--kv-cache-dtype=fp8"],
        },
    }
    objects = render(helm, overrides)
    validate(objects)
    container = vllm_container(objects)
    assert container["command"] == ["vllm", "serve"]
    args = container["args"]
    assert args[0] == "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"
    for flag in (
        "--enable-auto-tool-choice",
        "--tool-call-parser=qwen3_coder",
        "--tensor-parallel-size=8",
        "--enable-expert-parallel",
        "--max-model-len=1048576",
        "--kv-cache-dtype=fp8",
    ):
        assert flag in args
    overrides_arg = next(a for a in args if a.startswith("--hf-overrides="))
    rope = yaml.safe_load(overrides_arg.split("=", 1)[1])["rope_scaling"]
    assert rope == {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 262144}
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 8}
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "qcoder-api-key", "key": "api-key"}


def test_fp8_at_load_for_a_bf16_checkpoint(helm):
    args = vllm_container(render(helm, {"engine": "vllm", "vllm": {"quantization": "fp8"}}))["args"]
    assert "--quantization=fp8" in args
    assert not any(a.startswith("--quantization") for a in vllm_container(render(helm, VLLM))["args"])


def test_multi_node_is_a_leader_worker_set_with_ray(helm):
    objects = by_kind(render(helm, MULTI_NODE))
    assert ("Deployment", "qcoder") not in objects
    lws = objects[("LeaderWorkerSet", "qcoder")]["spec"]["leaderWorkerTemplate"]
    assert lws["size"] == 2
    leader = lws["leaderTemplate"]["spec"]["containers"][0]
    assert "ray start --head" in leader["args"][0] and "--distributed-executor-backend=ray" in leader["args"][0]
    assert "--pipeline-parallel-size=2" in leader["args"]
    worker = lws["workerTemplate"]["spec"]["containers"][0]
    assert "LWS_LEADER_ADDRESS" in worker["args"][0]
    # Workers must not be selected by the Service: only the leader answers the API.
    service_selector = objects[("Service", "qcoder")]["spec"]["selector"]
    assert not service_selector.items() <= lws["workerTemplate"]["metadata"]["labels"].items()


def test_multi_node_refuses_a_volume_only_one_node_can_mount(helm):
    broken = copy.deepcopy(MULTI_NODE)
    broken["vllm"]["modelCache"]["accessMode"] = "ReadWriteOnce"
    with pytest.raises(helm.TemplateFail, match="ReadWriteMany"):
        render(helm, broken)


def test_kubernetes_validate_catches_a_broken_object(helm):
    """The validation above can fail: a misspelt field in a rendered Deployment is reported."""
    deployment = copy.deepcopy(by_kind(render(helm))[("Deployment", "qcoder")])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# --- the kustomize base -------------------------------------------------------------------------------------------


def test_kustomize_base_is_the_chart_for_default_values(helm):
    """deploy/k8s is the chart's rendering (less the generated Secret): regenerate it when this fails."""
    root = DEPLOY / "k8s"
    on_disk = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.yaml")}
    assert on_disk == helm.kustomize_tree(), (
        "deploy/k8s is stale: python deploy/helm_render.py --write-kustomize deploy/k8s"
    )


def kustomize(folder) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def without_secret(helm, objects) -> dict:
    return {key: obj for key, obj in by_kind(objects).items() if key not in helm.NOT_IN_KUSTOMIZE}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize)")
def test_kubectl_kustomize_output_passes_kubernetes_validate(helm):
    objects = kustomize(DEPLOY / "k8s")
    validate(objects)
    assert by_kind(objects) == without_secret(helm, render(helm))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize)")
def test_kustomize_components_match_the_chart_options(helm, tmp_path):
    """An overlay of the base with both components is the chart with autoscaling and the ServiceMonitor on."""
    base = os.path.relpath(DEPLOY / "k8s", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [base],
                "components": [f"{base}/components/{name}" for name in helm.COMPONENTS],
            }
        )
    )
    objects = kustomize(tmp_path)
    validate(objects)
    everything = {}
    for values in helm.COMPONENTS.values():
        everything = helm._merge(everything, values)
    assert by_kind(objects) == without_secret(helm, render(helm, everything))
