"""The docker-compose stack (docker-compose.yaml, Dockerfile, .dockerignore, deploy/) is consistent.

No Docker engine runs here, so these tests pin by construction what ``docker compose up --build``
relies on: the six services and their start order, one image for every Airflow service, a database
URL that matches the postgres service, mounts whose host paths exist, a pools file that Airflow's own
importer accepts, a base image that matches the Airflow this repo is locked to, and a Kubernetes
connection that reads the kubeconfig where it is mounted.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import posixpath
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
POOLS_FILE = REPO_ROOT / "deploy" / "pools.json"
CONSTRAINTS_FILE = REPO_ROOT / "constraints" / "constraints-3.11.txt"

INIT = "airflow-init"
#: The `celery` profile (CeleryExecutor): the broker and two workers.
CELERY_PROFILE = "celery"
CELERY_WORKERS = ("airflow-worker-1", "airflow-worker-2")
CELERY_SERVICES = ("redis", *CELERY_WORKERS)
LONG_RUNNING_AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    *CELERY_WORKERS,
)
AIRFLOW_SERVICES = (INIT, *LONG_RUNNING_AIRFLOW_SERVICES)
ALL_SERVICES = ("postgres", *AIRFLOW_SERVICES, "redis")
DEFAULT_PROFILE_SERVICES = tuple(name for name in ALL_SERVICES if name not in CELERY_SERVICES)
DAGS_FOLDER_IN_CONTAINER = "/opt/airflow/dags"


# --- helpers -------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def _with_defaults(value: str) -> str:
    """Compose interpolation as on a machine where none of the variables is set: defaults win."""
    return _VAR.sub(lambda m: m.group("default") or "", value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Every volume entry of a service in long form: type, source (defaults applied), target, read_only."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            parts = _with_defaults(entry).split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            mounts.append({"type": kind, "source": source, "target": target, "read_only": read_only})
        else:
            mounts.append(
                {
                    "type": entry["type"],
                    "source": _with_defaults(str(entry["source"])),
                    "target": entry["target"],
                    "read_only": bool(entry.get("read_only", False)),
                    "bind": entry.get("bind", {}),
                }
            )
    return mounts


def _mount_at(service: dict[str, Any], target: str) -> dict[str, Any]:
    matches = [m for m in _mounts(service) if m["target"] == target]
    assert len(matches) == 1, f"expected exactly one mount at {target}, found {matches}"
    return matches[0]


def _mount_holding(service: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The mount whose target contains ``path`` (the deepest one), if any."""
    holding = [
        m for m in _mounts(service) if path == m["target"] or path.startswith(m["target"].rstrip("/") + "/")
    ]
    return max(holding, key=lambda m: len(m["target"]), default=None)


def _host_path(source: str) -> Path:
    return (COMPOSE_FILE.parent / source).resolve()


def _init_script() -> str:
    command = _services()[INIT]["command"]
    return command if isinstance(command, str) else "\n".join(command)


def _pools_file_in_container() -> str:
    found = re.findall(r"airflow pools import\s+(\S+)", _init_script())
    assert len(found) == 1, f"airflow-init should run `airflow pools import <file>` once, found {found}"
    return found[0]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY, flags such as --chown dropped."""
    copies = []
    for keyword, args in _dockerfile_instructions():
        if keyword == "COPY":
            tokens = [t for t in shlex.split(args) if not t.startswith("--")]
            copies.append((tokens[:-1], tokens[-1]))
    return copies


def _copied_sources() -> set[str]:
    return {src.rstrip("/") for sources, _ in _dockerfile_copies() for src in sources}


def _pip_install_run() -> str:
    runs = [
        args for keyword, args in _dockerfile_instructions() if keyword == "RUN" and "pip install" in args
    ]
    assert len(runs) == 1, f"expected one RUN with pip install in the Dockerfile, found {runs}"
    return runs[0]


def _base_image() -> str:
    froms = [args for keyword, args in _dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) == 1, f"expected a single-stage Dockerfile, found FROM {froms}"
    return froms[0].split()[0]


def _directories_the_image_creates() -> set[str]:
    """Directories made by ``RUN umask 0002; mkdir -p ...`` in the Dockerfile, with their parents."""
    created: set[str] = set()
    for keyword, args in _dockerfile_instructions():
        if keyword == "RUN" and "mkdir -p" in args:
            assert "umask 0002" in args, "directories for volumes must be created group-writable (umask 0002)"
            for path in (t for t in args.split() if t.startswith("/")):
                while path not in ("/", ""):
                    created.add(path)
                    path = posixpath.dirname(path)
    return created


def _dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _excluded_from_build_context(path: str) -> bool:
    """Docker's .dockerignore rule: a pattern matches a path or any of its parents; the last match wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in _dockerignore_patterns():
        negated = raw.startswith("!")
        pattern = posixpath.normpath(raw.lstrip("!").strip().lstrip("/"))
        regex = _glob_regex(pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def _kubernetes_connection() -> Any:
    from airflow.sdk import Connection

    env = _environment(_services()["airflow-scheduler"])
    assert "AIRFLOW_CONN_KUBERNETES_DEFAULT" in env, "the kubernetes_default connection is not configured"
    raw = env["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
    json.loads(raw)  # Airflow reads a value starting with "{" as JSON: it must be valid JSON
    return Connection.from_json(raw, conn_id="kubernetes_default")


# --- services and start order --------------------------------------------------------------------


def test_compose_defines_six_services_and_three_more_in_the_celery_profile() -> None:
    services = _services()
    assert set(services) == set(ALL_SERVICES)
    profiles = {name: service.get("profiles") for name, service in services.items()}
    assert {name for name, names in profiles.items() if not names} == set(DEFAULT_PROFILE_SERVICES), profiles
    assert {name: profiles[name] for name in CELERY_SERVICES} == {
        key: [CELERY_PROFILE] for key in CELERY_SERVICES
    }


def test_every_airflow_service_uses_the_same_locally_built_image() -> None:
    services = _services()
    builds = {name: json.dumps(services[name].get("build"), sort_keys=True) for name in AIRFLOW_SERVICES}
    images = {name: services[name].get("image") for name in AIRFLOW_SERVICES}
    assert len(set(builds.values())) == 1, f"Airflow services build differently: {builds}"
    assert len(set(images.values())) == 1, f"Airflow services use different images: {images}"
    build = services[INIT]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert _host_path(context) == REPO_ROOT, "the image must be built from the repo root (./Dockerfile)"
    image = images[INIT]
    assert image, "give the built image a tag so every service runs the same one"
    assert not image.startswith("apache/airflow"), "the stack must run the image with this package installed"


def test_every_airflow_service_waits_for_init_to_complete() -> None:
    services = _services()
    for name in LONG_RUNNING_AIRFLOW_SERVICES:
        depends_on = services[name].get("depends_on", {})
        assert depends_on.get(INIT) == {"condition": "service_completed_successfully"}, (
            f"{name} must start only after {INIT} exited 0, depends_on is {depends_on}"
        )


def test_every_airflow_service_waits_for_a_healthy_postgres() -> None:
    services = _services()
    for name in AIRFLOW_SERVICES:
        depends_on = services[name].get("depends_on", {})
        assert depends_on.get("postgres") == {"condition": "service_healthy"}, (
            f"{name} must wait for a healthy postgres, depends_on is {depends_on}"
        )
    test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(test if isinstance(test, list) else [test])


def test_init_migrates_the_database_then_imports_the_pools() -> None:
    script = _init_script()
    migrate, pools = script.find("airflow db migrate"), script.find("airflow pools import")
    assert migrate != -1, f"{INIT} does not run `airflow db migrate`:\n{script}"
    assert pools > migrate, f"{INIT} must import pools after migrating the database:\n{script}"
    assert "set -e" in script, f"{INIT} must fail (and hold back the other services) when a step fails"


def test_api_server_port_is_published_and_matches_the_execution_api_url() -> None:
    services = _services()
    apiserver = services["airflow-apiserver"]
    assert apiserver["command"] == "api-server"
    published = {str(p).rsplit(":", 1)[-1]: str(p) for p in apiserver.get("ports", [])}
    assert "8080" in published, f"the api-server's port 8080 is not published: {apiserver.get('ports')}"
    # Authentication is off (all admins): publish on the loopback interface only.
    assert published["8080"].startswith("127.0.0.1:"), published["8080"]
    health = " ".join(apiserver["healthcheck"]["test"])
    assert "localhost:8080/api/v2/version" in health

    url = urlsplit(_environment(services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver" and url.hostname in services
    assert url.port == 8080 and url.path == "/execution/"


def test_preflight_api_connection_points_at_the_api_server_service() -> None:
    """daily_retraining's pre-flight reads pools over REST (Airflow 3 tasks have no database access)."""
    from airflow.sdk import Connection

    services = _services()
    env = _environment(services["airflow-scheduler"])
    conn_id = env["TRAINING_GUARD_AIRFLOW_API_CONN_ID"]
    raw = env[f"AIRFLOW_CONN_{conn_id.upper()}"]
    conn = Connection.from_json(raw, conn_id=conn_id)
    assert conn.host == "airflow-apiserver" and conn.host in services
    assert conn.port == 8080


def test_each_airflow_service_runs_its_airflow_3_command() -> None:
    services = _services()
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    env = _environment(services["airflow-scheduler"])
    # `docker compose up` with nothing set: LocalExecutor (the celery profile sets AIRFLOW_EXECUTOR).
    assert _with_defaults(env["AIRFLOW__CORE__EXECUTOR"]) == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"


# --- database ------------------------------------------------------------------------------------


def test_database_url_points_at_the_postgres_service_with_its_credentials() -> None:
    services = _services()
    postgres_env = _environment(services["postgres"])
    for name in AIRFLOW_SERVICES:
        url = make_url(_environment(services[name])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert url.get_backend_name() == "postgresql"
        assert url.host == "postgres" and url.host in services
        assert url.port in (None, 5432)
        assert url.username == postgres_env["POSTGRES_USER"]
        assert url.password == postgres_env["POSTGRES_PASSWORD"]
        assert url.database == postgres_env["POSTGRES_DB"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert _mount_at(services["postgres"], "/var/lib/postgresql/data")["type"] == "volume"


# --- mounts and volumes --------------------------------------------------------------------------


def test_every_host_path_mounted_exists_in_the_repo() -> None:
    for name, service in _services().items():
        for mount in _mounts(service):
            if mount["type"] != "bind":
                continue
            assert not Path(mount["source"]).is_absolute(), f"{name} mounts an absolute host path {mount}"
            assert _host_path(mount["source"]).exists(), (
                f"{name} mounts {mount['source']}, missing in the repo"
            )


def test_every_airflow_service_mounts_dags_deploy_and_the_kubeconfig() -> None:
    services = _services()
    for name in AIRFLOW_SERVICES:
        dags = _mount_at(services[name], DAGS_FOLDER_IN_CONTAINER)
        assert _host_path(dags["source"]) == REPO_ROOT / "dags"
        deploy = _mount_at(services[name], "/opt/airflow/deploy")
        assert _host_path(deploy["source"]) == REPO_ROOT / "deploy" and deploy["read_only"]
        kubeconfig = _mount_at(services[name], "/opt/airflow/.kube/config")
        assert kubeconfig["read_only"], "the kubeconfig must be mounted read-only"
        assert _host_path(kubeconfig["source"]) == REPO_ROOT / "deploy" / "kubeconfig.example"
        assert _host_path(kubeconfig["source"]).is_file()


def test_every_named_volume_is_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for mount in _mounts(service):
            if mount["type"] == "volume":
                assert mount["source"] in declared, f"{name} uses undeclared volume {mount['source']}"


def test_training_guard_roots_live_on_named_volumes_the_image_prepares() -> None:
    """Checkpoints (what a retry resumes from), models and data survive restarts and are writable."""
    services = _services()
    created = _directories_the_image_creates()
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert env["TRAINING_GUARD_CHECKPOINT_ROOT"] == "/opt/airflow/checkpoints"
        for variable in (
            "TRAINING_GUARD_CHECKPOINT_ROOT",
            "TRAINING_GUARD_OUTPUT_ROOT",
            "TRAINING_GUARD_DATA_ROOT",
        ):
            mount = _mount_holding(services[name], env[variable])
            assert mount is not None and mount["type"] == "volume", (
                f"{variable}={env[variable]} of {name} is not on a named volume"
            )
            # A fresh named volume copies the image's directory at its mount point (owner, mode):
            # created by the airflow user with umask 0002, it is writable by any AIRFLOW_UID (GID 0).
            assert env[variable] in created, f"the Dockerfile must create {env[variable]} (mkdir -p)"


def test_shared_airflow_config_lives_on_a_volume_every_service_mounts() -> None:
    """One airflow.cfg (JWT secret, Fernet key) for all services, or task tokens fail to validate."""
    services = _services()
    for name in AIRFLOW_SERVICES:
        config = _environment(services[name])["AIRFLOW_CONFIG"]
        mount = _mount_holding(services[name], config)
        assert mount is not None and mount["type"] == "volume", f"{name}: {config} is not on a shared volume"
        assert mount["target"] in _directories_the_image_creates(), (
            f"the Dockerfile must create {mount['target']}"
        )
    # airflow-init writes airflow.cfg with mode 600 and every service must read it: same user everywhere.
    assert len({json.dumps(services[name].get("user")) for name in AIRFLOW_SERVICES}) == 1


# --- pools ---------------------------------------------------------------------------------------


def test_pools_file_used_by_init_is_mounted_and_exists_in_the_repo() -> None:
    in_container = _pools_file_in_container()
    mount = _mount_holding(_services()[INIT], in_container)
    assert mount is not None and mount["type"] == "bind", f"{in_container} is not under a mounted host path"
    relative = posixpath.relpath(in_container, mount["target"])
    on_host = _host_path(mount["source"]) / relative
    assert on_host == POOLS_FILE.resolve()
    assert on_host.is_file()


def test_pools_file_imports_cleanly_with_airflows_own_importer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs the real ``airflow pools import`` parser; only the database write is replaced."""
    from airflow.cli.commands import pool_command
    from airflow.models.pool import Pool

    max_name = Pool.pool.property.columns[0].type.length
    created: dict[str, dict[str, Any]] = {}

    class RecordingClient:
        """Validates like airflow.api.client.local_client.Client.create_pool, then records."""

        def create_pool(self, name, slots, description, include_deferred, team_name=None):
            assert name and name.strip() and len(name) <= max_name, f"invalid pool name {name!r}"
            int(slots)
            created[name] = {"slots": slots, "description": description, "include_deferred": include_deferred}
            return name, slots, description, team_name

    monkeypatch.setattr(pool_command, "get_current_api_client", RecordingClient)
    pools, failed = pool_command.pool_import_helper(str(POOLS_FILE))

    assert failed == [], f"airflow pools import would reject {failed}"
    assert len(pools) == len(json.loads(POOLS_FILE.read_text()))
    assert created["training_sla"]["slots"] == 4
    assert created["training_backfill"]["slots"] == 2
    for name, pool in created.items():
        assert isinstance(pool["slots"], int) and pool["slots"] > 0, name
        assert isinstance(pool["description"], str) and pool["description"], name
        assert isinstance(pool["include_deferred"], bool), name


# --- image ---------------------------------------------------------------------------------------


def test_dockerfile_base_image_matches_the_installed_airflow_and_python_3_11() -> None:
    match = re.fullmatch(r"apache/airflow:(?P<airflow>3\.3\.\d+)-python(?P<python>\d+\.\d+)", _base_image())
    assert match, f"FROM should be apache/airflow:3.3.x-python3.11, is {_base_image()}"
    assert match["python"] == "3.11"
    assert match["airflow"] == importlib.metadata.version("apache-airflow")
    pins = re.findall(r"^apache-airflow==(\S+)$", CONSTRAINTS_FILE.read_text(), flags=re.MULTILINE)
    assert pins == [match["airflow"]], (
        f"the constraints file pins apache-airflow {pins}, the image is {match}"
    )


def test_dockerfile_installs_the_package_with_the_repo_constraints_file() -> None:
    run = _pip_install_run()
    constraints = re.findall(r"(?:-c|--constraint)[ =](\S+)", run)
    assert constraints == ["constraints/constraints-3.11.txt"], run
    assert (REPO_ROOT / constraints[0]).is_file()
    assert "constraints" in _copied_sources()
    assert "--no-cache-dir" in run
    # The official image's rule: pin Airflow to the image's own version so pip cannot change it.
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in run
    users = [args for keyword, args in _dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1] == "airflow", "pip must run as the airflow user (the image refuses root)"


def test_dockerfile_copies_what_pyproject_needs_and_not_the_dags() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {p.rstrip("/") for p in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    copied = _copied_sources()
    assert needed <= copied, f"pip install . needs {needed - copied} in the image"
    assert "examples" in copied
    assert "dags" not in copied and "." not in copied, "dags/ is mounted at run time, not copied"


def test_example_program_lands_where_the_dag_looks_for_it() -> None:
    """dags/daily_retraining.py runs <dags folder>/../examples/training/train.py by default."""
    expected = posixpath.join(posixpath.dirname(DAGS_FOLDER_IN_CONTAINER), "examples")
    destinations = {dest.rstrip("/") for sources, dest in _dockerfile_copies() if "examples/" in sources}
    assert destinations == {expected}
    envs = [args for keyword, args in _dockerfile_instructions() if keyword == "ENV"]
    assert f"TRAINING_GUARD_EXAMPLES_DIR={expected}" in envs


def test_dockerignore_sends_the_copied_sources_and_nothing_else() -> None:
    for source in _copied_sources():
        path = REPO_ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        assert files, f"COPY {source}: nothing in the repo"
        for file in files:
            relative = file.relative_to(REPO_ROOT).as_posix()
            if "__pycache__" in relative or relative.endswith(".pyc"):
                assert _excluded_from_build_context(relative), relative
            else:
                assert not _excluded_from_build_context(relative), f"{relative} is COPYed but .dockerignored"
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        ".airflow/airflow.db",
        "dags/daily_retraining.py",
        "deploy/pools.json",
        "deploy/kubeconfig.example",
        "tests/conftest.py",
        "airflow_training_guard/__pycache__/__init__.cpython-311.pyc",
    ):
        assert _excluded_from_build_context(kept_out), f"{kept_out} would be sent to the Docker build"


# --- auth and Kubernetes -------------------------------------------------------------------------


def test_auth_manager_is_airflows_simple_auth_manager_in_all_admins_mode() -> None:
    env = _environment(_services()["airflow-apiserver"])
    module_name, _, class_name = env["AIRFLOW__CORE__AUTH_MANAGER"].rpartition(".")
    assert getattr(importlib.import_module(module_name), class_name).__name__ == "SimpleAuthManager"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"].lower() == "true"
    assert "LOCAL USE ONLY" in COMPOSE_FILE.read_text(), "the all-admins mode must be flagged as local only"


def test_kubernetes_connection_reads_the_mounted_kubeconfig() -> None:
    from airflow.providers.cncf.kubernetes.get_provider_info import get_provider_info

    conn = _kubernetes_connection()
    assert conn.conn_type == "kubernetes"
    extra = conn.extra_dejson
    known = {
        field
        for conn_type in get_provider_info()["connection-types"]
        if conn_type["connection-type"] == "kubernetes"
        for field in conn_type["conn-fields"]
    }
    assert set(extra) <= known, f"unknown Kubernetes connection extras {set(extra) - known}"
    for name in AIRFLOW_SERVICES:
        mount = _mount_at(_services()[name], extra["kube_config_path"])
        assert mount["type"] == "bind" and mount["read_only"]
        assert mount.get("bind", {}).get("create_host_path") is False, (
            "a mistyped KUBECONFIG_PATH must fail, not create an empty directory on the host"
        )


def test_default_kubeconfig_is_a_placeholder_without_credentials() -> None:
    placeholder = REPO_ROOT / "deploy" / "kubeconfig.example"
    assert yaml.safe_load(placeholder.read_text()) is None, (
        "the placeholder must hold no cluster or credentials"
    )


# --- the celery profile --------------------------------------------------------------------------


def _worker_script(name: str) -> str:
    command = _services()[name]["command"]
    assert command[:2] == ["bash", "-c"], f"{name} must run a bash script, got {command}"
    # Compose turns `$$` into `$` before the container sees the script.
    return str(command[2]).replace("$$", "$")


def test_executor_is_chosen_by_one_variable_that_every_airflow_service_reads() -> None:
    services = _services()
    values = {name: _environment(services[name])["AIRFLOW__CORE__EXECUTOR"] for name in AIRFLOW_SERVICES}
    assert set(values.values()) == {"${AIRFLOW_EXECUTOR:-LocalExecutor}"}, values


def test_broker_is_the_redis_service_and_results_go_to_the_postgres_service() -> None:
    services = _services()
    postgres_env = _environment(services["postgres"])
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379), broker
        backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
        assert backend.startswith("db+"), f"Celery's database result backend needs the db+ prefix: {backend}"
        url = make_url(backend.removeprefix("db+"))
        assert (url.host, url.username, url.password, url.database) == (
            "postgres",
            postgres_env["POSTGRES_USER"],
            postgres_env["POSTGRES_PASSWORD"],
            postgres_env["POSTGRES_DB"],
        )
    redis = services["redis"]
    assert [str(port) for port in redis.get("expose", [])] == ["6379"]
    assert not redis.get("ports"), "the broker has no authentication: never publish it on the host"
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


def test_workers_run_airflow_celery_worker_after_redis_and_the_api_server_are_healthy() -> None:
    services = _services()
    for name in CELERY_WORKERS:
        script = _worker_script(name)
        assert script.strip().splitlines()[-1] == "exec airflow celery worker", script
        depends_on = services[name]["depends_on"]
        assert depends_on["redis"] == {"condition": "service_healthy"}, depends_on
        # Tasks on a worker report to the api-server's execution API.
        assert depends_on["airflow-apiserver"] == {"condition": "service_healthy"}, depends_on
        assert _environment(services[name])["DUMB_INIT_SETSID"] == "0", (
            "warm shutdown needs DUMB_INIT_SETSID=0"
        )


def test_worker_refuses_to_start_under_another_executor_and_says_how_to_start_the_profile() -> None:
    """A worker beside a LocalExecutor scheduler idles forever and every task runs on the scheduler."""
    import subprocess

    script = _worker_script(CELERY_WORKERS[0])
    result = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": "/usr/bin:/bin", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 1
    assert "AIRFLOW__CORE__EXECUTOR is 'LocalExecutor'" in result.stderr
    assert "AIRFLOW_EXECUTOR=CeleryExecutor docker compose --profile celery up" in result.stderr


def test_scheduler_waits_for_redis_only_when_the_celery_profile_runs() -> None:
    depends_on = _services()["airflow-scheduler"]["depends_on"]
    assert depends_on["redis"] == {"condition": "service_healthy", "required": False}, depends_on


def test_worker_healthcheck_pings_its_own_node_on_the_providers_celery_app() -> None:
    from airflow.providers.celery.executors import celery_executor

    for name in CELERY_WORKERS:
        test = " ".join(_services()[name]["healthcheck"]["test"])
        match = re.search(r"celery --app (\S+) inspect ping -d \"celery@\$\$\{HOSTNAME\}\"", test)
        assert match, test
        module, _, attribute = match.group(1).rpartition(".")
        assert module == celery_executor.__name__ and hasattr(celery_executor, attribute), match.group(1)


def test_celery_provider_is_pinned_to_the_installed_version() -> None:
    pins = dict(line.split("==", 1) for line in CONSTRAINTS_FILE.read_text().splitlines() if "==" in line)
    installed = importlib.metadata.version("apache-airflow-providers-celery")
    assert pins.get("apache-airflow-providers-celery") == installed
    dev = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(req.startswith("apache-airflow-providers-celery") for req in dev), dev
