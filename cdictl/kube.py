"""The one module of cdictl that talks to the Kubernetes API (the official client).

Objects come and go as plain JSON dicts, so the pure modules need no client types. API
errors are translated here, once, into KubeError with the server's own message (what
client-go prints, e.g. `persistentvolumeclaims "x" not found`); request bodies and
tokens never go into a message.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from cdicontract import api
from cdictl import manifests

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _translate(exc: ApiException) -> KubeError:
    message = exc.reason or "API error"
    try:
        doc = json.loads(exc.body or "")
        if isinstance(doc, dict) and doc.get("message"):
            message = str(doc["message"])
    except (ValueError, TypeError):
        pass
    return KubeError(message, exc.status)


def _unreachable(exc: urllib3.exceptions.HTTPError) -> KubeError:
    reason = getattr(exc, "reason", None) or exc
    return KubeError(f"cannot reach the Kubernetes API server: {reason}")


def load(kubeconfig: str | None, namespace: str | None) -> tuple[Kube, str]:
    """A client from `kubeconfig` (else $KUBECONFIG or ~/.kube/config, else in-cluster)
    and the namespace to use: the flag's, else the context's, else `default`."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration)
        if namespace is None:
            _, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=kubeconfig)
            namespace = (current or {}).get("context", {}).get("namespace") or "default"
    except (ConfigException, OSError) as exc:
        if kubeconfig is not None:
            raise KubeError(f"cannot load kubeconfig {kubeconfig}: {exc}") from None
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except ConfigException:
            raise KubeError(f"no usable kubeconfig: {exc}") from None
        if namespace is None:
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                    namespace = f.read().strip() or "default"
            except OSError:
                namespace = "default"
    return Kube(client.ApiClient(configuration=configuration)), namespace


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        self._core = client.CoreV1Api(api_client)
        self._storage = client.StorageV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def _json(response: Any) -> JSON:
        doc = json.loads(response.data)
        if not isinstance(doc, dict):
            raise KubeError("the API server answered something that is not an object")
        return doc

    def _get(self, call: Any, *args: Any) -> JSON | None:
        try:
            return self._json(call(*args, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _translate(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _unreachable(exc) from None

    def _do(self, call: Any, *args: Any, **kwargs: Any) -> JSON:
        try:
            return self._json(call(*args, _preload_content=False, **kwargs))
        except ApiException as exc:
            raise _translate(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _unreachable(exc) from None

    # -- PVCs ------------------------------------------------------------------------
    def pvc(self, namespace: str, name: str) -> JSON | None:
        return self._get(self._core.read_namespaced_persistent_volume_claim, name, namespace)

    def create_pvc(self, body: JSON) -> JSON:
        return self._do(self._core.create_namespaced_persistent_volume_claim,
                        body["metadata"]["namespace"], body)

    def annotate_pvc(self, namespace: str, name: str, annotations: dict[str, str]) -> JSON:
        patch = {"metadata": {"annotations": annotations}}
        # The client picks the patch type from the body: a dict is a merge patch.
        return self._do(self._core.patch_namespaced_persistent_volume_claim, name,
                        namespace, patch)

    # -- DataVolumes -----------------------------------------------------------------
    def datavolume(self, namespace: str, name: str) -> JSON | None:
        return self._get(self._custom.get_namespaced_custom_object, api.GROUP, api.VERSION,
                         namespace, api.DATAVOLUMES, name)

    def create_datavolume(self, body: JSON) -> JSON:
        return self._do(self._custom.create_namespaced_custom_object, api.GROUP,
                        api.VERSION, body["metadata"]["namespace"], api.DATAVOLUMES, body)

    # -- the rest --------------------------------------------------------------------
    def require_storage_class(self, name: str) -> None:
        """virtctl checks the class exists before creating anything."""
        self._do(self._storage.read_storage_class, name)

    def events(self, namespace: str) -> list[JSON]:
        items = self._do(self._core.list_namespaced_event, namespace).get("items") or []
        return [e for e in items if isinstance(e, dict)]

    def cdiconfig(self) -> JSON:
        return self._do(self._custom.get_cluster_custom_object, api.GROUP, api.VERSION,
                        api.CDICONFIGS, api.CDICONFIG_NAME)

    def upload_token(self, namespace: str, pvc: str) -> str:
        """A fresh upload token for `namespace/pvc` from the UploadTokenRequest API."""
        made = self._do(self._custom.create_namespaced_custom_object, manifests.UPLOAD_GROUP,
                        manifests.UPLOAD_VERSION, namespace, manifests.UPLOAD_TOKEN_REQUESTS,
                        manifests.token_request(pvc))
        token = made.get("status", {}).get("token")
        if not isinstance(token, str) or not token:
            raise KubeError("the UploadTokenRequest came back without a token")
        return token
