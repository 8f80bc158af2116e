"""The restricted-profile check names every field a namespace enforcing "restricted" would refuse."""

from __future__ import annotations

from typing import Any

from airflow_training_guard.kubernetes.pod_security import restricted_violations

SAFE_CONTAINER = {
    "name": "base",
    "image": "x",
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


def pod(spec: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    base = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{**SAFE_CONTAINER, **container}],
    }
    return {"spec": {**base, **(spec or {})}}


def fields(p: dict[str, Any]) -> list[str]:
    return [v.field for v in restricted_violations(p)]


def test_the_guards_default_pod_passes() -> None:
    assert restricted_violations(pod()) == []


def test_host_namespaces_and_host_path_are_named() -> None:
    found = fields(
        pod(
            {
                "hostNetwork": True,
                "hostPID": True,
                "hostIPC": True,
                "volumes": [{"name": "r", "hostPath": {"path": "/"}}],
            }
        )
    )
    assert found == ["spec.hostNetwork", "spec.hostPID", "spec.hostIPC", "spec.volumes[r].hostPath"]


def test_privileged_init_container_without_defaults_is_named_field_by_field() -> None:
    p = pod({"initContainers": [{"name": "setup", "securityContext": {"privileged": True}}]})
    found = fields(p)
    assert "spec.initContainers[setup].securityContext.privileged" in found
    assert "spec.initContainers[setup].securityContext.allowPrivilegeEscalation" in found
    assert "spec.initContainers[setup].securityContext.capabilities.drop" in found


def test_root_user_added_capabilities_and_unconfined_seccomp_are_refused() -> None:
    p = pod(
        securityContext={
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
            "runAsUser": 0,
            "seccompProfile": {"type": "Unconfined"},
        }
    )
    violations = {v.field: v for v in restricted_violations(p)}
    assert violations["spec.containers[base].securityContext.capabilities.add"].value == ["SYS_ADMIN"]
    assert "spec.containers[base].securityContext.runAsUser" in violations
    assert "spec.containers[base].securityContext.seccompProfile.type" in violations


def test_run_as_non_root_may_come_from_the_pod_or_the_container() -> None:
    p = pod({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}})
    assert fields(p) == ["spec.containers[base].securityContext.runAsNonRoot"]
    p["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = True
    assert fields(p) == []


def test_volume_types_outside_the_restricted_list_are_named() -> None:
    p = pod(
        {"volumes": [{"name": "nfs", "nfs": {"server": "x", "path": "/"}}, {"name": "ok", "emptyDir": {}}]}
    )
    assert fields(p) == ["spec.volumes[nfs].nfs"]


def test_messages_name_value_and_fix() -> None:
    [violation] = restricted_violations(pod({"hostNetwork": True}))
    assert str(violation).startswith("spec.hostNetwork=True: remove hostNetwork")


def test_restricted_mode_refuses_naming_the_task_every_field_and_the_opt_out() -> None:
    import pytest

    from airflow_training_guard.kubernetes.pod_security import PodSecurityError, enforce

    assert enforce(pod(), mode="restricted", task_id="train") is None
    with pytest.raises(
        PodSecurityError, match=r"(?s)task 'train' breaks .* in 1 field\(s\):\n  - spec\.hostPID"
    ):
        enforce(pod({"hostPID": True}), mode="restricted", task_id="train")


def test_warn_mode_returns_the_warning_instead_of_refusing() -> None:
    from airflow_training_guard.kubernetes.pod_security import enforce

    warning = enforce(pod({"hostPID": True}), mode="warn", task_id="train")
    assert warning is not None and warning.startswith("pod_security='warn'") and "spec.hostPID" in warning


def test_an_unknown_mode_is_refused_with_both_choices() -> None:
    import pytest

    from airflow_training_guard.exceptions import GuardConfigError
    from airflow_training_guard.kubernetes.pod_security import check_mode

    assert check_mode("warn") == "warn"
    with pytest.raises(
        GuardConfigError, match=r"^pod_security='strict' is not valid; use 'restricted' .* or 'warn'"
    ):
        check_mode("strict")
