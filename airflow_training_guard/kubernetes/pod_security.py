"""The Pod Security Standards "restricted" profile, checked on the pod that will really be submitted.

A ``pod_template_file`` or ``full_pod_spec`` can bring ``hostNetwork``, ``hostPID``, a ``hostPath``
volume of ``/`` or a privileged init container; KubernetesPodOperator submits them unchanged. The
guard checks the merged pod (template + spec + arguments + the provider's xcom sidecar + a cluster
policy's ``pod_mutation_hook``) against the profile's rules, so what is refused is exactly what a
namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` would refuse, but when the
task starts, with every field named and its fix, instead of as a ``FailedCreate`` event.

Rules follow https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.30+):
the baseline controls plus restricted's volume types, privilege escalation, non-root, seccomp and
capabilities. Pure: works on the pod as the API server would receive it (a camelCase dict).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_training_guard.exceptions import GuardConfigError

#: Capabilities the baseline profile allows to add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: Volume sources the restricted profile allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
#: Sysctls the baseline profile allows.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})


@dataclass(frozen=True)
class Violation:
    """One field of the pod that the restricted profile refuses.

    :param field: the field's path in the pod, e.g. ``spec.initContainers[setup].securityContext.privileged``.
    :param value: the value it has (``None`` when the rule needs a field that is missing).
    :param fix: what to write instead.
    """

    field: str
    value: Any
    fix: str

    def __str__(self) -> str:
        shown = "unset" if self.value is None else repr(self.value)
        return f"{self.field}={shown}: {self.fix}"


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            yield f"spec.{kind}[{container.get('name', '?')}]", container


def restricted_violations(pod: Mapping[str, Any]) -> list[Violation]:
    """Every field of ``pod`` (a camelCase dict) that the "restricted" profile refuses, in field order."""
    spec: Mapping[str, Any] = pod.get("spec") or {}
    pod_sc: Mapping[str, Any] = spec.get("securityContext") or {}
    found: list[Violation] = []

    def add(field: str, value: Any, fix: str) -> None:
        found.append(Violation(field, value, fix))

    # -- baseline: host namespaces, host paths, host ports, sysctls ----------------------------------
    for name in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(name):
            add(
                f"spec.{name}",
                spec[name],
                f"remove {name} (or set it to false); a training pod needs no host namespace",
            )
    for volume in spec.get("volumes") or []:
        kinds = [key for key, value in volume.items() if key != "name" and value is not None]
        for kind in kinds:
            if kind == "hostPath":
                add(
                    f"spec.volumes[{volume.get('name', '?')}].hostPath",
                    (volume.get("hostPath") or {}).get("path"),
                    "mount data through a persistentVolumeClaim, csi or emptyDir volume instead of a host path",
                )
            elif kind not in RESTRICTED_VOLUME_TYPES:
                add(
                    f"spec.volumes[{volume.get('name', '?')}].{kind}",
                    "set",
                    f"use one of {sorted(RESTRICTED_VOLUME_TYPES)} (e.g. a persistentVolumeClaim)",
                )
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            add("spec.securityContext.sysctls", sysctl.get("name"), "remove the unsafe sysctl")
    _check_selinux("spec.securityContext", pod_sc, add)
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        add("spec.securityContext.windowsOptions.hostProcess", True, "remove hostProcess")
    if pod_sc.get("runAsUser") == 0:
        add("spec.securityContext.runAsUser", 0, "run as a non-zero user id (e.g. 1000)")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_ALLOWED:
        add("spec.securityContext.seccompProfile.type", pod_seccomp, "use 'RuntimeDefault'")
    # -- per container ----------------------------------------------------------------------------------
    for where, container in _containers(spec):
        sc: Mapping[str, Any] = container.get("securityContext") or {}
        path = f"{where}.securityContext"
        if sc.get("privileged"):
            add(f"{path}.privileged", True, "remove privileged (or set it to false)")
        if sc.get("allowPrivilegeEscalation") is not False:
            add(f"{path}.allowPrivilegeEscalation", sc.get("allowPrivilegeEscalation"), "set it to false")
        capabilities: Mapping[str, Any] = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            add(f"{path}.capabilities.drop", capabilities.get("drop"), "drop ['ALL']")
        extra = [c for c in capabilities.get("add") or [] if c != "NET_BIND_SERVICE"]
        if extra:
            add(f"{path}.capabilities.add", extra, "add no capability other than NET_BIND_SERVICE")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            add(
                f"{path}.runAsNonRoot",
                run_as_non_root,
                "set runAsNonRoot: true (here or in spec.securityContext) and build the image with a non-root USER",
            )
        if sc.get("runAsUser") == 0:
            add(f"{path}.runAsUser", 0, "run as a non-zero user id (e.g. 1000)")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in _SECCOMP_ALLOWED:
            add(f"{path}.seccompProfile.type", seccomp, "use 'RuntimeDefault'")
        elif seccomp is None and pod_seccomp is None:
            add(
                f"{path}.seccompProfile.type",
                None,
                "set seccompProfile {'type': 'RuntimeDefault'} on the pod",
            )
        if sc.get("procMount") not in (None, "Default"):
            add(f"{path}.procMount", sc.get("procMount"), "remove procMount (or set 'Default')")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            add(f"{path}.windowsOptions.hostProcess", True, "remove hostProcess")
        _check_selinux(path, sc, add)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                add(
                    f"{where}.ports[{port.get('containerPort')}].hostPort",
                    port["hostPort"],
                    "remove hostPort",
                )
    return found


def _check_selinux(path: str, sc: Mapping[str, Any], add: Any) -> None:
    selinux: Mapping[str, Any] = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES:
        add(f"{path}.seLinuxOptions.type", selinux.get("type"), "remove it or use 'container_t'")
    for key in ("user", "role"):
        if selinux.get(key):
            add(f"{path}.seLinuxOptions.{key}", selinux[key], f"remove seLinuxOptions.{key}")


def describe(violations: list[Violation]) -> str:
    """One line per violation, for an error message or a log line."""
    return "\n".join(f"  - {violation}" for violation in violations)


class PodSecurityError(GuardConfigError):
    """The pod breaks the restricted profile and the DAG did not opt out (``pod_security='warn'``)."""


#: ``pod_security`` values: refuse violations of the restricted profile, or log them and go on.
POD_SECURITY_MODES = ("restricted", "warn")


def check_mode(mode: object) -> str:
    """Validate the operators' ``pod_security`` argument when the DAG is parsed."""
    if mode not in POD_SECURITY_MODES:
        raise GuardConfigError(
            f"pod_security={mode!r} is not valid; use 'restricted' (refuse pods that break the "
            "Pod Security Standards restricted profile) or 'warn' (log each violation and submit)"
        )
    return str(mode)


def enforce(pod: Mapping[str, Any], *, mode: str, task_id: str) -> str | None:
    """Apply ``mode`` to the pod about to be submitted (a camelCase dict).

    :returns: ``None`` when the pod passes; with ``mode='warn'`` the warning to log.
    :raises PodSecurityError: with ``mode='restricted'``, naming every field and its fix.
    """
    violations = restricted_violations(pod)
    if not violations:
        return None
    listing = describe(violations)
    if mode == "warn":
        return (
            f"pod_security='warn': the pod breaks the Pod Security Standards restricted profile in "
            f"{len(violations)} field(s); submitting it anyway:\n{listing}"
        )
    raise PodSecurityError(
        f"the pod for task {task_id!r} breaks the Pod Security Standards restricted profile "
        f"in {len(violations)} field(s):\n{listing}\nFix them in the operator arguments or the pod "
        "template, or pass pod_security='warn' to submit it anyway (every violation is then logged)"
    )
