"""Fixtures for tests that need a Kubernetes API server: a kmock-based emulator on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kubernetes.k8s_api import K8sApi


@pytest.fixture
def k8s_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[K8sApi]:
    """A fresh Kubernetes API server for one test, reachable three ways.

    - ``k8s_api.kubeconfig_path``: a kubeconfig with no credentials;
    - ``k8s_api.airflow_conn_id``: an Airflow connection (``AIRFLOW_CONN_*`` set for this test),
      for ``KubernetesPodOperator(kubernetes_conn_id=k8s_api.airflow_conn_id)``;
    - ``k8s_api.core_v1()``: a ``CoreV1Api`` bound to it.

    Teardown fails the test if a request crashed the emulator (a bug here, not in the code under
    test).
    """
    import kubernetes.client

    # KubernetesHook loads the kubeconfig with client_configuration=None, which replaces the
    # process-wide default Configuration; put the previous one back after the test.
    monkeypatch.setattr(kubernetes.client.Configuration, "_default", kubernetes.client.Configuration._default)
    with K8sApi.running(tmp_path) as api:
        name, value = api.airflow_conn_env
        monkeypatch.setenv(name, value)
        yield api
