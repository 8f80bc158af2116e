"""The coverage page's HTTP API: a FastAPI app the plugin mounts on Airflow's API server.

Every endpoint goes through Airflow's auth manager with the caller's own identity (the UI's
``_token`` cookie or an ``Authorization: Bearer`` header, exactly as Airflow's REST API reads it):

- reading a pipeline (its grid, a cell) needs ``GET`` on its backfill DAG, as reading that DAG's
  runs does; a pipeline whose DAG the user may not read is not listed and answers 403;
- backfilling needs ``POST`` on the DAG's runs (what triggering it needs); the request is validated
  first by the same :func:`~airflow_training_guard.backfill.validation.validate_request` the DAG's
  first task runs, and refused with every problem before any DAG run exists; a valid one is
  triggered through Airflow's REST API with the caller's credentials, so Airflow checks them too.

Routes (under the plugin's prefix, ``/training-guard``):

- ``GET /coverage``: the page (HTML; its data comes from the routes below);
- ``GET /api/pipelines``: the pipelines the caller may read, with dimensions and limits;
- ``GET /api/pipelines/{name}/grid?date_from=&date_to=&<dimension>=a,b``: the grid (compact);
- ``GET /api/pipelines/{name}/cell?partition_key=``: one cell's details and links;
- ``POST /api/pipelines/{name}/backfill``: ``{start_date, end_date, <dimension>: [...], reprocess}``.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from importlib import resources
from typing import Annotated, Any

import httpx
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airflow_training_guard.backfill.validation import (
    END_FIELD,
    REPROCESS_FIELD,
    START_FIELD,
    BackfillRequestError,
    validate_request,
)
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.coverage import (
    GridSpec,
    QueuedKey,
    read_cell,
    read_coverage,
)
from airflow_training_guard.partitions.keys import parse_key
from airflow_training_guard.partitions.ledger import PartitionLedger, ReprocessMode
from airflow_training_guard.plugins.pipelines import (
    PipelineInfo,
    ledger_engine,
    load_pipeline,
    pipeline_dag_ids,
    pipeline_from_dag,
)

log = logging.getLogger(__name__)

#: Where the plugin mounts this app on the API server.
URL_PREFIX = "/training-guard"
#: Days shown when the page does not say: the 30 days up to yesterday.
DEFAULT_DAYS = 30
_FAR_FUTURE = dt.date(9999, 12, 30)

app = FastAPI(
    title="training-guard partition coverage",
    description="Partition coverage grid of training-guard pipelines, and backfills from it.",
)


# --- authorization ---------------------------------------------------------------------------------


_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """The caller, resolved by Airflow's own ``get_user`` (bearer header first, then the UI cookie).

    Imported when a request arrives, not when the plugin loads: every Airflow process loads
    plugins, only the API server serves this app.
    """
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


User = Annotated[Any, Depends(current_user)]


def _may(user: Any, dag_id: str, method: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel

    entity = DagAccessEntity.RUN if method == "POST" else None
    return bool(
        get_auth_manager().is_authorized_dag(
            method=method,  # type: ignore[arg-type]
            access_entity=entity,
            details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
            user=user,
        )
    )


def _readable_pipeline(name: str, user: Any) -> PipelineInfo:
    """The pipeline, if it exists and the user may read its backfill DAG; 403 otherwise.

    An unknown name and a forbidden one answer alike, so the answer does not tell which
    pipelines exist to someone who may not read them.
    """
    from airflow.utils.session import create_session

    dag_id = f"{name}_backfill"
    if not _may(user, dag_id, "GET"):
        raise HTTPException(
            status_code=403, detail=f"you may not read DAG {dag_id!r}, so not its partitions either"
        )
    with create_session() as session:
        pipeline = load_pipeline(name, session)
    if pipeline is None:
        raise HTTPException(
            status_code=404,
            detail=f"no training-guard pipeline {name!r}: no DAG {dag_id!r} tagged training-guard and backfill",
        )
    return pipeline


# --- helpers ---------------------------------------------------------------------------------------


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _parse_day(value: str | None, field: str, default: dt.date) -> dt.date:
    if value in (None, ""):
        return default
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise HTTPException(
            status_code=400,
            detail=f"{field} {value!r} is not a date in the form YYYY-MM-DD (e.g. 2026-11-01)",
        ) from None


def _queued_keys(pipeline: PipelineInfo, engine: Any) -> dict[str, QueuedKey]:
    """Keys the pipeline's queued and running backfill runs will process, by run.

    Each run's conf is the validated form; its keys are planned against the ledger as its
    ``validate_request`` task plans them, so a key the run will skip is not shown as running.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    with create_session() as session:
        runs = session.execute(
            select(DagRun.run_id, DagRun.conf, DagRun.queued_at, DagRun.start_date).where(
                DagRun.dag_id == pipeline.backfill_dag_id,
                DagRun.state.in_((DagRunState.QUEUED, DagRunState.RUNNING)),
            )
        ).all()
    ledger = PartitionLedger(
        engine, namespace=pipeline.name, stale_after=pipeline.stale_after, create_tables=False
    )
    queued: dict[str, QueuedKey] = {}
    for run_id, conf, queued_at, start_date in runs:
        try:
            request = validate_request(
                conf or {}, dimensions=pipeline.dimensions, max_days=10**6, today=_FAR_FUTURE
            )
        except (BackfillRequestError, GuardConfigError):
            continue  # a run whose conf is not a form request: it shows up once it claims keys
        since = queued_at or start_date
        if since is None:
            continue
        since = since.astimezone(dt.UTC).replace(tzinfo=None)
        for key in ledger.plan(request.partition_keys(), request.reprocess).to_run:
            queued.setdefault(key, QueuedKey(run_id=run_id, queued_at=since))
    return queued


def _root_path(request: Request) -> str:
    """The path Airflow itself is served under (empty, or a reverse proxy's prefix)."""
    root = str(request.scope.get("root_path", ""))
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root


def _links(request: Request, task_instance: dict[str, Any] | None) -> dict[str, str] | None:
    if not task_instance:
        return None
    quote = urllib.parse.quote
    base = (
        f"{_root_path(request)}/dags/{quote(task_instance['dag_id'], safe='')}/runs/"
        f"{quote(task_instance['run_id'], safe='')}/tasks/{quote(task_instance['task_id'], safe='')}"
        f"/mapped/{task_instance['map_index']}"
    )
    return {
        "task_instance": f"{base}/details",
        "log": f"{base}?try_number={task_instance['try_number']}",
    }


# --- routes ----------------------------------------------------------------------------------------


@app.get("/", include_in_schema=False)
def index(request: Request) -> RedirectResponse:
    return RedirectResponse(url=f"{request.scope.get('root_path', '')}/coverage")


@app.get("/coverage", response_class=HTMLResponse)
def coverage_page(user: User) -> HTMLResponse:
    """The coverage page. Its data comes from the API routes, which check every permission."""
    page = resources.files("airflow_training_guard.plugins").joinpath("static/coverage.html").read_text()
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@app.get("/api/pipelines")
def list_pipelines(user: User) -> dict[str, Any]:
    """Every pipeline whose backfill DAG the caller may read; ``can_backfill``: may trigger it."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    pipelines = []
    with create_session() as session:
        for dag_id in pipeline_dag_ids(session):
            if not _may(user, dag_id, "GET"):
                continue
            dag = SerializedDagModel.get_dag(dag_id, session=session)
            if dag is None:
                continue
            info = pipeline_from_dag(dag)
            pipelines.append({**info.to_payload(), "can_backfill": _may(user, dag_id, "POST")})
    return {"pipelines": pipelines, "today": _today().isoformat()}


@app.get("/api/pipelines/{name}/grid")
def grid(
    name: str,
    request: Request,
    user: User,
    date_from: Annotated[str | None, Query()] = None,
    date_to: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """The coverage grid; filter a dimension with ``?<name>=a,b``."""
    pipeline = _readable_pipeline(name, user)
    yesterday = _today() - dt.timedelta(days=1)
    last = _parse_day(date_to, "date_to", yesterday)
    first = _parse_day(date_from, "date_from", last - dt.timedelta(days=DEFAULT_DAYS - 1))
    where = {
        dimension.name: tuple(v for v in request.query_params[dimension.name].split(",") if v)
        for dimension in pipeline.dimensions
        if request.query_params.get(dimension.name)
    }
    try:
        spec = GridSpec(
            namespace=pipeline.name,
            dimensions=tuple((d.name, d.values) for d in pipeline.dimensions),
            date_from=first,
            date_to=last,
            where=where,
            stale_after=pipeline.stale_after,
        )
        engine = ledger_engine()
        coverage = read_coverage(engine, spec, queued=_queued_keys(pipeline, engine))
    except GuardConfigError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    return {**coverage.to_payload(), "can_backfill": _may(user, pipeline.backfill_dag_id, "POST")}


@app.get("/api/pipelines/{name}/cell")
def cell(name: str, request: Request, user: User, partition_key: Annotated[str, Query()]) -> dict[str, Any]:
    """One key's details: state, commits, fencing token, version, rows, holder and since, error, links."""
    pipeline = _readable_pipeline(name, user)
    try:
        parse_key(partition_key, dimensions=len(pipeline.dimensions) + 1)
    except GuardConfigError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    engine = ledger_engine()
    detail = read_cell(
        engine,
        pipeline.name,
        partition_key,
        stale_after=pipeline.stale_after,
        queued=_queued_keys(pipeline, engine).get(partition_key),
    )
    payload = detail.to_payload()
    payload["links"] = _links(request, payload["task_instance"])
    if detail.queued_by:
        quote = urllib.parse.quote
        payload["links"] = {
            "run": f"{_root_path(request)}/dags/{quote(pipeline.backfill_dag_id, safe='')}/runs/"
            f"{quote(detail.queued_by, safe='')}"
        }
    return payload


def _trigger_url(request: Request, dag_id: str) -> str:
    return (
        f"{request.url.scheme}://{request.url.netloc}{_root_path(request)}/api/v2/dags/"
        f"{urllib.parse.quote(dag_id, safe='')}/dagRuns"
    )


def _credentials(request: Request) -> dict[str, str]:
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    header = request.headers.get("authorization")
    if header:
        return {"Authorization": header}
    token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    return {"Authorization": f"Bearer {token}"} if token else {}


@app.post("/api/pipelines/{name}/backfill", status_code=201, response_model=None)
def backfill(
    name: str, request: Request, user: User, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any] | JSONResponse:
    """Validate a backfill request like the DAG does, then trigger the backfill DAG with it.

    422 with ``problems`` (every one) when invalid: no DAG run is created.
    """

    pipeline = _readable_pipeline(name, user)
    dag_id = pipeline.backfill_dag_id
    if not _may(user, dag_id, "POST"):
        raise HTTPException(
            status_code=403,
            detail=f"you may not trigger DAG {dag_id!r}, so you cannot backfill {name!r}; ask for a role "
            "that may trigger DAG runs",
        )
    try:
        validated = pipeline.validate(body)
    except BackfillRequestError as err:
        return JSONResponse(status_code=422, content={"detail": str(err), "problems": list(err.problems)})
    plan = PartitionLedger(
        ledger_engine(), namespace=pipeline.name, stale_after=pipeline.stale_after, create_tables=False
    ).plan(validated.partition_keys(), validated.reprocess)
    run_conf: dict[str, Any] = {
        START_FIELD: validated.start.isoformat(),
        END_FIELD: validated.end.isoformat(),
        **{dimension: list(values) for dimension, values in validated.selections},
        REPROCESS_FIELD: validated.reprocess.value,
    }
    response = httpx.post(
        _trigger_url(request, dag_id),
        json={"logical_date": None, "conf": run_conf, "note": "backfill from the partition coverage page"},
        headers=_credentials(request),
        timeout=30,
    )
    if response.status_code >= 400:
        try:
            detail: Any = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        status = response.status_code if response.status_code in (401, 403, 404, 409) else 502
        raise HTTPException(status_code=status, detail=f"Airflow refused to trigger {dag_id!r}: {detail}")
    run = response.json()
    log.info(
        "backfill of %s triggered by %s from the coverage page: run %s, %s; %s",
        name,
        getattr(user, "get_name", lambda: "?")(),
        run.get("dag_run_id"),
        validated.describe(),
        plan.describe(),
    )
    return {
        "dag_id": dag_id,
        "dag_run_id": run.get("dag_run_id"),
        "conf": run_conf,
        "request": validated.describe(),
        "plan": plan.describe(),
        "keys_to_run": list(plan.to_run),
        "skipped": dict(plan.skipped),
        "reprocess": ReprocessMode(validated.reprocess).value,
    }
