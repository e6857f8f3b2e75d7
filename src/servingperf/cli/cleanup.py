"""``servingperf cleanup``: remove what dead runs left behind — local emulator servers whose
harness is gone (by their environment marker, never anyone else's processes) and, with
``--kserve``, the Kubernetes objects a run created (by label)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servingperf.cli.common import fail, out, run_async
from servingperf.errors import ServingPerfError


def cleanup(
    kserve: Annotated[
        bool, typer.Option("--kserve", help="also delete Kubernetes objects made by servingperf")
    ] = False,
    run_id: Annotated[
        str | None, typer.Option(help="with --kserve: only the objects of this run")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="with --kserve: kubeconfig file")] = None,
    context: Annotated[str | None, typer.Option(help="with --kserve: kubeconfig context")] = None,
    in_cluster: Annotated[
        bool, typer.Option(help="with --kserve: use the pod's service account")
    ] = False,
) -> None:
    """Remove local servers of dead runs; with --kserve, the cluster objects of (dead) runs."""
    from servingperf.platforms.reaper import reap_stale

    report = reap_stale()
    for line in report.lines():
        out.print(line, markup=False, highlight=False)
    if not kserve:
        return
    from servingperf.platforms.kserve import cleanup_stale
    from servingperf.platforms.kserve_manifests import MANAGED_SELECTOR, run_selector
    from servingperf.platforms.kube_client import connect

    selector = run_selector(run_id) if run_id else MANAGED_SELECTOR

    async def remove() -> list[str]:
        api = await connect(
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            context=context,
            in_cluster=in_cluster,
            request_timeout_s=30.0,
        )
        try:
            return await cleanup_stale(api, selector)
        finally:
            await api.close()

    try:
        deleted = run_async(remove())
    except ServingPerfError as exc:
        raise fail(exc) from None
    for name in deleted:
        out.print(f"deleted {name}", markup=False, highlight=False)
    out.print(f"{len(deleted)} Kubernetes object(s) matching {selector} deleted")
