"""``appsleuth info``: the cores, SLURM allocation and devices this machine offers."""

from __future__ import annotations

import json
from typing import Any

import click

from appsleuth.hardware import JAX_CUDA, detect_devices

__all__ = ["format_bytes", "info_command", "print_devices"]

_BACKEND_LABEL = {"tensorflow": "TensorFlow", "torch": "PyTorch"}


def format_bytes(n: int | None) -> str:
    """``n`` bytes as GiB with one decimal, or ``-`` when unknown."""
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def print_devices(info: dict[str, Any], console: Any = None) -> None:
    """Print :func:`~appsleuth.hardware.detect_devices`'s result as a readable table.

    Args:
        info: The detection result.
        console: A ``rich`` console. Defaults to a new one on stdout.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    cpu = info["cpu"]
    table = Table(title="appsleuth: this machine", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    # Machine facts and environment values are text, never markup: a SLURM node list
    # or a JAX error naming "jax[cuda12]" would lose its brackets or break the table.
    table.add_row("host", escape(str(info.get("hostname"))))
    table.add_row("CPU", escape(str(cpu.get("model") or "unknown")))
    table.add_row("cores (total)", str(cpu["cores_total"]))
    quota = f", CPU quota {cpu['quota']}" if cpu.get("quota") is not None else ""
    table.add_row(
        "cores available", f"{cpu['cores_available']} (affinity {cpu['affinity']}{quota})"
    )
    slurm = info.get("slurm") or {}
    table.add_row(
        "SLURM",
        escape(", ".join(f"{k}={v}" for k, v in slurm.items())) if slurm else "not in a SLURM job",
    )
    problem = info.get("backend_problem")
    if problem:
        table.add_row(
            "Keras backend",
            f"[red]{escape(str(info['backend']))} (not valid here): training stops with: "
            f"{escape(problem)}[/]",
        )
    else:
        version = info.get("backend_version")
        label = _BACKEND_LABEL.get(info["backend"], "JAX")
        about = f" ({label} {escape(version)})" if version else ""
        table.add_row("Keras backend", str(info["backend"]) + about)
    jax_info = info.get("jax")
    if jax_info is None:
        table.add_row("JAX", "not installed")
    elif "error" in jax_info:
        table.add_row("JAX", f"failed to start: {escape(str(jax_info['error']))}")
    else:
        table.add_row(
            "JAX", f"{jax_info['version']}, default platform {jax_info['default_platform']}"
        )
        for d in jax_info["devices"]:
            # bytes_limit is JAX's allocator pool (75 % of a GPU by default), not the card.
            pool = (
                f" (JAX memory pool {format_bytes(d['memory_bytes'])})" if d["memory_bytes"] else ""
            )
            table.add_row(f"  device {d['id']}", escape(f"{d['platform']} {d['kind']}") + pool)
    smi = info.get("nvidia_smi")
    if smi:
        names = "; ".join(f"{g['name']} ({format_bytes(g['memory_bytes'])})" for g in smi)
        table.add_row("NVIDIA driver", escape(names))
        if info["device"] != "gpu":
            hint = f"JAX does not use these GPUs: install {escape(JAX_CUDA)}"
            if "backend_gpus" in info:
                label = _BACKEND_LABEL[info["backend"]]
                hint = f"{label} does not use these GPUs: install a CUDA build of {label}"
            table.add_row("", f"[yellow]{hint}[/]")
    if info.get("backend_error"):
        label = _BACKEND_LABEL[info["backend"]]
        table.add_row("", f"[red]{label} failed to start: {escape(info['backend_error'])}[/]")
    if "backend_gpus" in info:  # TensorFlow or PyTorch: fit on their own devices
        where = "CUDA GPU" if info["device"] == "gpu" else "CPU only"
        table.add_row("training device", f"{where} ({_BACKEND_LABEL[info['backend']]}, fit)")
    elif info["gpus"]:
        table.add_row("training device", "CUDA GPU (fused engine on GPU)")
    else:
        # The fused engine starts the next epoch's work on a second core (engines._ahead).
        ahead = (
            "working ahead on a second core unless --threads 1"
            if cpu["cores_available"] >= 2
            else "in turn: one usable core"
        )
        table.add_row("training device", f"CPU only (fused engine, {ahead})")
    for key, value in (info.get("env") or {}).items():
        table.add_row(f"  ${key}", escape(repr(value)))  # "[...]" is no markup
    console.print(table)


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info_command(as_json: bool) -> None:
    """Show CPU cores, the SLURM allocation and the GPUs the backend sees."""
    info = detect_devices()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        print_devices(info)
