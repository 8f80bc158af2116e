"""Pod-in/pod-out helpers and the pod watchdog that the Kubernetes operators compose.

The room mirrors the cncf.kubernetes provider's own split (``PodGenerator.reconcile_pods``,
``xcom_sidecar.add_xcom_sidecar``, ``PodManager``): each helper takes a ``V1Pod`` (or its
serialised dict) and returns one, so the pod operator and the multi-node Job operator build the
same pods from the same pieces, and every piece is tested without building an operator.

- :mod:`.config`: :class:`~.config.CheckpointSettings` and :class:`~.config.GpuSettings`, the
  operators' grouped, self-validating settings (``checkpoint=``, ``gpu=``).
- :mod:`.pod_arguments`: the KubernetesPodOperator arguments derived from them (deadlines,
  retries, GPU resources and tolerations, the Kueue label), before KPO builds its pod.
- :mod:`.pod_building`: the training contract's environment, the checkpoint volume, guard
  annotations, GPU resources and tolerations, safe security defaults for every container.
- :mod:`.pod_security`: the Pod Security Standards check of the pod that will really be submitted.
- :mod:`.images`: which images a pod runs, and the digest rule applied to each.
- :mod:`.capacity`: the GPU request against node shapes and the namespace's quota.
- :mod:`.watchdog`: the heartbeat watchdog that deletes a stalled pod through ``PodManager``.
- :mod:`.failures`: what a failed pod left (status, events, log tail), read tolerantly.

No Airflow import at module level except in :mod:`.watchdog` (it drives the provider's PodManager).
"""
