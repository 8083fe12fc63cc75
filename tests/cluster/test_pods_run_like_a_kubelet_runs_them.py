"""The simulated node runs pods as a kubelet does: status, restarts, messages, network."""

from __future__ import annotations

import urllib.request

import pytest

from tests.cluster.helpers import POD_NAME_ENV, SERVE, phase, pod, wait_for

pytestmark = pytest.mark.cluster


def _create(cluster, ns, manifest):
    return cluster.api().create(f"/api/v1/namespaces/{ns}/pods", manifest)


def test_a_completed_pod_reports_its_exit_code_and_termination_message(cluster, namespace):
    _create(
        cluster,
        namespace,
        pod("done", "echo '{\"ok\": true}' > /dev/termination-log; echo hello; exit 0"),
    )
    p = wait_for("Succeeded", phase(cluster.api(), namespace, "done", "Succeeded"))
    state = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    assert state["message"] == '{"ok": true}\n'
    conditions = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conditions == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "False",
        "Ready": "False",
    }
    assert cluster.logs(namespace, "done") == "hello\n"


def test_termination_message_is_capped_at_4096_bytes(cluster, namespace):
    _create(
        cluster,
        namespace,
        pod("big", "head -c 10000 /dev/zero | tr '\\0' x > /dev/termination-log; exit 3"),
    )
    p = wait_for("Failed", phase(cluster.api(), namespace, "big", "Failed"))
    state = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 3 and state["reason"] == "Error"
    assert len(state["message"]) == 4096


def test_fallback_to_logs_on_error(cluster, namespace):
    manifest = pod(
        "fallback",
        "echo something broke; exit 1",
        container={"terminationMessagePolicy": "FallbackToLogsOnError"},
    )
    _create(cluster, namespace, manifest)
    p = wait_for("Failed", phase(cluster.api(), namespace, "fallback", "Failed"))
    assert (
        p["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "something broke"
    )


def test_restart_count_grows_on_failure(cluster, namespace):
    _create(cluster, namespace, pod("crashy", "exit 7", restart="OnFailure"))
    api = cluster.api()

    def restarted_twice():
        p = api.get(f"/api/v1/namespaces/{namespace}/pods/crashy")
        statuses = p.get("status", {}).get("containerStatuses", [])
        return statuses and statuses[0]["restartCount"] >= 2 and statuses[0]

    status = wait_for("two restarts", restarted_twice, 60)
    assert status["lastState"]["terminated"]["exitCode"] == 7


def test_unknown_image_fails_to_pull(cluster, namespace):
    manifest = pod("nope", "true", container={"image": "example.invalid/nothing:1"})
    _create(cluster, namespace, manifest)
    api = cluster.api()

    def waiting_reason():
        p = api.get(f"/api/v1/namespaces/{namespace}/pods/nope")
        statuses = p.get("status", {}).get("containerStatuses", [])
        reason = statuses and statuses[0]["state"].get("waiting", {}).get("reason")
        return reason in ("ErrImagePull", "ImagePullBackOff") and p

    p = wait_for("ErrImagePull", waiting_reason, 30)
    assert p["status"]["phase"] == "Pending"


def test_active_deadline_fails_the_pod(cluster, namespace):
    _create(cluster, namespace, pod("slow", "sleep 60", activeDeadlineSeconds=2))
    p = wait_for("Failed", phase(cluster.api(), namespace, "slow", "Failed"), 30)
    assert p["status"]["reason"] == "DeadlineExceeded"


def test_two_pods_listen_on_the_same_port_with_their_own_ips(cluster, namespace):
    api = cluster.api()
    for name in ("one", "two"):
        manifest = pod(
            name,
            SERVE,
            container=POD_NAME_ENV
            | {
                "readinessProbe": {"httpGet": {"path": "/", "port": 8443}, "periodSeconds": 1},
            },
        )
        _create(cluster, namespace, manifest)
    ips = {}
    for name in ("one", "two"):

        def ready(name=name):
            p = api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
            conds = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
            return conds.get("Ready") == "True" and p

        ips[name] = wait_for(f"{name} ready", ready, 60)["status"]["podIP"]
    assert ips["one"] != ips["two"]
    for name, ip in ips.items():
        with urllib.request.urlopen(f"http://{ip}:8443/", timeout=5) as r:
            assert r.read().decode() == name


def test_a_pod_reaches_a_service_by_its_dns_names(cluster, namespace):
    api = cluster.api()
    _create(
        cluster,
        namespace,
        pod(
            "backend",
            SERVE,
            restart="Always",
            labels={"app": "backend"},
            container=POD_NAME_ENV
            | {
                "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
            },
        ),
    )
    api.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "backend"},
            "spec": {
                "selector": {"app": "backend"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8443}],
            },
        },
    )
    names = [
        "backend",
        f"backend.{namespace}",
        f"backend.{namespace}.svc",
        f"backend.{namespace}.svc.cluster.local",
    ]
    script = " && ".join(
        f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{n}/').read().decode())\""
        for n in names
    )
    # Retry until the endpoint is ready: a client in a real cluster would too.
    _create(
        cluster,
        namespace,
        pod("client", f"for i in $(seq 60); do ({script}) && exit 0; sleep 1; done; exit 1"),
    )
    wait_for("client Succeeded", phase(api, namespace, "client", "Succeeded", "Failed"), 90)
    p = api.get(f"/api/v1/namespaces/{namespace}/pods/client")
    assert p["status"]["phase"] == "Succeeded", cluster.logs(namespace, "client")
    # Earlier attempts may have failed while the endpoint became ready.
    assert cluster.logs(namespace, "client").split()[-4:] == ["backend"] * 4
    svc = api.get(f"/api/v1/namespaces/{namespace}/services/backend")
    with urllib.request.urlopen(f"http://{svc['spec']['clusterIP']}/", timeout=5) as r:
        assert r.read() == b"backend"


def test_in_cluster_client_acts_as_its_service_account(cluster, namespace):
    cluster.kubectl(
        "create", "role", "cm-reader", "--verb=list", "--resource=configmaps", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:default",
        "-n",
        namespace,
    )
    script = (
        "import ssl, urllib.request as u, urllib.error as e\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "ns = open(d + 'namespace').read()\n"
        "ctx = ssl.create_default_context(cafile=d + 'ca.crt')\n"
        "tok = open(d + 'token').read()\n"
        "import os\n"
        "for host in ('kubernetes.default.svc', os.environ['KUBERNETES_SERVICE_HOST']):\n"
        "  for kind in ('configmaps', 'secrets'):\n"
        "    url = f'https://{host}/api/v1/namespaces/{ns}/{kind}'\n"
        "    r = u.Request(url, headers={'Authorization': 'Bearer ' + tok})\n"
        "    try:\n"
        "      print(kind, u.urlopen(r, context=ctx).status)\n"
        "    except e.HTTPError as x:\n"
        "      print(kind, x.code)\n"
    )
    manifest = pod(
        "sa",
        'python3 -c "$SCRIPT"',
        container={
            "env": [{"name": "SCRIPT", "value": script}],
            "securityContext": {"runAsUser": 107},
        },
    )
    _create(cluster, namespace, manifest)
    wait_for("done", phase(cluster.api(), namespace, "sa", "Succeeded", "Failed"), 60)
    assert cluster.logs(namespace, "sa").split() == ["configmaps", "200", "secrets", "403"] * 2


def test_env_from_downward_api_secrets_and_config_maps(cluster, namespace):
    api = cluster.api()
    api.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "s"}, "stringData": {"user": "alice"}},
    )
    api.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "c"}, "data": {"mode": "fast", "X": "1"}},
    )
    env = [
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "USER_NAME", "valueFrom": {"secretKeyRef": {"name": "s", "key": "user"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "mode"}}},
        {
            "name": "MEM",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
        {"name": "COMBINED", "value": "$(MODE)-$(NS)"},
    ]
    manifest = pod(
        "env",
        "echo $IP $NS $USER_NAME $MODE $MEM $COMBINED $CM_X",
        container={
            "env": env,
            "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "CM_"}],
            "resources": {"limits": {"memory": "300Mi"}},
        },
    )
    _create(cluster, namespace, manifest)
    p = wait_for("Succeeded", phase(api, namespace, "env", "Succeeded"), 60)
    assert cluster.logs(namespace, "env").split() == [
        p["status"]["podIP"],
        namespace,
        "alice",
        "fast",
        "300",
        f"fast-{namespace}",
        "1",
    ]


def test_deletion_sends_sigterm_then_removes_the_pod(cluster, namespace):
    api = cluster.api()
    _create(
        cluster,
        namespace,
        pod(
            "graceful",
            "trap 'echo got TERM; exit 0' TERM; echo armed; while :; do sleep 0.1; done",
            restart="Always",
        ),
    )
    # Running means started, not that the shell has set its trap yet.
    wait_for("trap set", lambda: "armed" in cluster.logs(namespace, "graceful"), 60)
    api.delete(f"/api/v1/namespaces/{namespace}/pods/graceful")
    wait_for(
        "pod gone",
        lambda: api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/graceful") is None,
        30,
    )
    assert "got TERM" in cluster.logs(namespace, "graceful")


def test_exceeding_the_memory_limit_is_oom_killed(cluster, namespace):
    hog = "python3 -c 'x = bytearray(400 * 1024 * 1024); print(len(x))'"
    manifest = pod("hog", hog, container={"resources": {"limits": {"memory": "64Mi"}}})
    _create(cluster, namespace, manifest)
    p = wait_for("Failed", phase(cluster.api(), namespace, "hog", "Failed"), 60)
    state = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (state["reason"], state["exitCode"]) == ("OOMKilled", 137)


def test_init_containers_run_first_and_exec_probes_gate_readiness(cluster, namespace):
    api = cluster.api()
    manifest = pod(
        "staged",
        "sleep 2; touch /work/ready; sleep 3600",
        restart="Always",
        initContainers=[
            {
                "name": "init",
                "image": "cdi-py/testutil",
                "command": ["sh", "-c", "echo init > /work/log"],
                "volumeMounts": [{"name": "w", "mountPath": "/work"}],
            },
        ],
        volumes=[{"name": "w", "emptyDir": {}}],
        container={
            "volumeMounts": [{"name": "w", "mountPath": "/work"}],
            "readinessProbe": {"exec": {"command": ["cat", "/work/ready"]}, "periodSeconds": 1},
        },
    )
    _create(cluster, namespace, manifest)
    running = wait_for("Running", phase(api, namespace, "staged", "Running"), 60)
    assert (
        running["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"]
        == "Completed"
    )

    def ready():
        p = api.get(f"/api/v1/namespaces/{namespace}/pods/staged")
        return p["status"]["containerStatuses"][0]["ready"] and p

    p = wait_for("ready", ready, 30)
    conditions = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conditions["Ready"] == "True" and conditions["Initialized"] == "True"


def test_kubectl_logs_reads_current_and_previous_runs(cluster, namespace):
    _create(cluster, namespace, pod("talker", "echo run; exit 1", restart="OnFailure"))
    api = cluster.api()

    def restarted():
        p = api.get(f"/api/v1/namespaces/{namespace}/pods/talker")
        statuses = p.get("status", {}).get("containerStatuses", [])
        return statuses and statuses[0]["restartCount"] >= 1

    wait_for("a restart", restarted, 60)
    out = cluster.kubectl("logs", "-n", namespace, "talker", "--previous").stdout
    assert out == "run\n"


def test_failing_liveness_probe_restarts_the_container(cluster, namespace):
    manifest = pod(
        "unhealthy",
        "sleep 3600",
        restart="Always",
        container={
            "livenessProbe": {
                "exec": {"command": ["false"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            }
        },
    )
    _create(cluster, namespace, manifest)
    api = cluster.api()

    def restarted():
        p = api.get(f"/api/v1/namespaces/{namespace}/pods/unhealthy")
        statuses = p.get("status", {}).get("containerStatuses", [])
        return statuses and statuses[0]["restartCount"] >= 1 and statuses[0]

    status = wait_for("a restart", restarted, 60)
    assert status["lastState"]["terminated"]["exitCode"] in (137, 143)


def test_exec_runs_in_the_container_as_its_user(cluster, namespace):
    manifest = pod(
        "target",
        "echo inside > /tmp/mark; sleep 3600",
        restart="Always",
        container={
            "securityContext": {"runAsUser": 107},
            "env": [{"name": "FLAVOUR", "value": "x"}],
        },
    )
    _create(cluster, namespace, manifest)
    wait_for("Running", phase(cluster.api(), namespace, "target", "Running"), 60)
    wait_for(
        "marked",
        lambda: (
            cluster.exec(namespace, "target", "test", "-f", "/tmp/mark", check=False).returncode
            == 0
        ),
        30,
    )
    out = cluster.exec(
        namespace, "target", "sh", "-c", "id -u; cat /tmp/mark; echo $FLAVOUR"
    ).stdout
    assert out.split() == ["107", "inside", "x"]


def test_a_service_created_later_resolves_in_running_pods(cluster, namespace):
    _create(cluster, namespace, pod("early", "sleep 3600", restart="Always"))
    wait_for("Running", phase(cluster.api(), namespace, "early", "Running"), 60)
    svc = cluster.api().create(
        f"/api/v1/namespaces/{namespace}/services",
        {"metadata": {"name": "late"}, "spec": {"ports": [{"port": 80}]}},
    )
    lookup = "import socket; print(socket.gethostbyname('late'))"

    def resolved():
        out = cluster.exec(namespace, "early", "python3", "-c", lookup, check=False).stdout
        return out.strip() == svc["spec"]["clusterIP"]

    wait_for("late resolves", resolved, 30)
