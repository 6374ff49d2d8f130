"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Response

from exchange.api.errors import ApiCode, ApiError
from exchange.api.runtime import Runtime, get_runtime
from exchange.api.schemas import ErrorOut, ReadyOut, StatusOut

GATEWAY_PROBE_TIMEOUT_S = 0.5
router = APIRouter(tags=["operations"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.get("/health", response_model=StatusOut)
async def health() -> dict[str, Any]:
    """The process is up (it answers even while recovering or draining)."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ErrorOut}})
async def ready(runtime: RuntimeDep) -> dict[str, Any]:
    """Ready to take orders: recovered, sequencer running, not shutting down."""
    sequencer = runtime.service.sequencer
    if not runtime.ready or sequencer is None:
        raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, "not ready", retry_after_s=1)
    if runtime.gateway_url is not None and not await _gateway_ready(runtime.gateway_url):
        # Market data is part of the exchange a client was promised: not ready while its gateway is down.
        raise ApiError(503, ApiCode.SERVICE_UNAVAILABLE, f"the market-data feed gateway ({runtime.gateway_url}) is "
                       "not ready", retry_after_s=1)
    return {"status": "ready", "journal_seq": sequencer.last_committed_seq,
            "projected_seq": runtime.projected_seq()}


async def _gateway_ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=GATEWAY_PROBE_TIMEOUT_S) as client:
            return (await client.get(f"{url}/ready")).status_code == 200
    except httpx.HTTPError:
        return False


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text format: requests and latency per route, orders by outcome, journal fsync time and seq,
    projector lag, sequencer queue depth, WebSocket clients."""
    sequencer = runtime.service.sequencer
    if sequencer is not None:
        m = runtime.metrics
        m.observe_new_fsync_ns(sequencer.fsync_ns, sequencer.batches_committed)
        m.set_journal_seq(sequencer.last_committed_seq)
        m.set_sequencer_queue_depth(sequencer.queue_depth)
        m.set_projector_lag(sequencer.last_committed_seq - runtime.projected_seq())
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)
