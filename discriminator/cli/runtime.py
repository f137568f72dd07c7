"""`kit runtime`: make and inspect the evaluator's runtime, the Python every bundle run uses (validator_sim/runtime.py)."""

from __future__ import annotations

import json
import sys

import typer

from discriminator.cli.common import console, escape, examples_epilog, kit_command, print_success

EXAMPLES = [
    ("kit runtime install", "make the evaluator's runtime once (gasbench 0.11.1's torch, transformers, timm …; several GB)"),
    ("kit runtime info", "where it is, what it holds, and what the kit's own environment differs in"),
    ("kit runtime info --json", "the same, machine-readable"),
    ("KIT_RUNTIME_DIR=/data/kit-runtimes kit runtime install", "keep runtimes on another disk"),
]

runtime_app = typer.Typer(help="The evaluator's runtime: the library versions the network loads bundles with.",
                          no_args_is_help=True)


@kit_command
def install_command(
    force: bool = typer.Option(False, "--force", help="Remake it even when it is there and matches the pins."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Send pip's output to install.log beside the runtime (its tail is shown if pip fails)."),
) -> None:
    """Make the evaluator's runtime: a virtualenv holding exactly gasbench 0.11.1's pinned versions.

    Idempotent: when it exists and matches the pins nothing is downloaded. Build verification, `kit check` and
    `kit bench` run every bundle in it from then on. torch 2.8.0 and torchvision 0.23.0 on the package registry
    are CUDA builds (several GB with their CUDA libraries); they also run on a CPU. Nothing is installed into the
    kit's own environment.
    """
    from contextlib import nullcontext

    from discriminator.errors import KitError
    from validator_sim.runtime import RuntimeSetupError, describe_bytes, install_runtime, runtime_home, runtime_root

    console.print(f"evaluator runtime: {escape(str(runtime_home()))}")
    log_path = runtime_root() / "install.log"
    if quiet:
        runtime_root().mkdir(parents=True, exist_ok=True)
    try:
        with (open(log_path, "w", encoding="utf-8") if quiet else nullcontext()) as log:
            runtime, manifest, made = install_runtime(
                force=force, echo=lambda line: console.print(f"  {escape(line)}"), pip_output=log)
    except RuntimeSetupError as exc:
        if quiet:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
            console.print("\n".join(escape(line) for line in tail))
            raise KitError(exc.message, f"the lines above are the end of {log_path}; {exc.fix}") from exc
        raise KitError(exc.message, exc.fix) from exc
    except KeyboardInterrupt:
        console.print("interrupted: the unfinished runtime was removed; rerun `kit runtime install`")
        raise typer.Exit(130)
    size = describe_bytes(int(manifest.get("bytes") or 0))
    if made:
        print_success(f"made the evaluator's runtime in {manifest.get('install_seconds', 0):.0f} s ({size}): "
                      f"{runtime.python}")
    else:
        print_success(f"the evaluator's runtime is already there and matches the pins ({size}): {runtime.python}")


@kit_command
def info_command(json_output: bool = typer.Option(False, "--json", help="Print the facts as JSON.")) -> None:
    """Where the evaluator's runtime is, what it holds, and how the kit's own environment differs from the pins."""
    from validator_sim.runtime import (EVALUATOR, EVALUATOR_PINS, PINS_SOURCE, current_runtime,
                                       describe_bytes, kit_environment_notes, manifest_problem, probe_python,
                                       read_manifest, runtime_home, version_drift)

    home = runtime_home()
    manifest = read_manifest(home)
    problem = manifest_problem(manifest, home) if home.exists() else None
    kit = probe_python(sys.executable)
    facts = {
        "evaluator": EVALUATOR, "pins_source": PINS_SOURCE, "pins": EVALUATOR_PINS,
        "runtime": {"path": str(home), "exists": home.exists(), "usable": home.exists() and problem is None,
                    "problem": problem, "installed": (manifest or {}).get("installed"),
                    "bytes": (manifest or {}).get("bytes"), "install_seconds": (manifest or {}).get("install_seconds"),
                    "created": (manifest or {}).get("created")},
        "kit_environment": {"python": sys.executable, "versions": kit["versions"],
                            "drift": version_drift(kit["versions"]),
                            "notes": kit_environment_notes(kit["versions"], kit["cuda_packages"])},
        "bundles_run_under": current_runtime().kind,
    }
    if json_output:
        typer.echo(json.dumps(facts, indent=2))
        return
    console.print(f"[bold]{EVALUATOR}[/] pins ({escape(PINS_SOURCE)}):")
    console.print("  " + ", ".join(f"{name} {version}" for name, version in EVALUATOR_PINS.items()))
    if facts["runtime"]["usable"]:
        size = describe_bytes(int(manifest.get("bytes") or 0))
        console.print(f"[green]✓[/] runtime: {escape(str(home))} ({size}, made {manifest.get('created')} in "
                      f"{manifest.get('install_seconds', 0):.0f} s) — every bundle run uses it")
    elif home.exists():
        console.print(f"[yellow]![/] runtime: {escape(problem or '')} — `kit runtime install` remakes it")
    else:
        console.print(f"[yellow]![/] runtime: not made ({escape(str(home))}) — `kit runtime install` makes it; until "
                      "then bundles run under the kit's own environment")
    drift = facts["kit_environment"]["drift"]
    console.print(f"kit's own environment ({escape(sys.executable)}): "
                  + (escape("; ".join(drift)) if drift else "the same versions as the pins"))
    for note in facts["kit_environment"]["notes"]:
        console.print(f"[yellow]![/] {escape(note)}")


@kit_command
def remove_command() -> None:
    """Delete the evaluator's runtime (`kit runtime install` makes it again)."""
    from validator_sim.runtime import remove_runtime, runtime_home

    removed = remove_runtime()
    if removed is None:
        console.print(f"no runtime at {escape(str(runtime_home()))}: nothing to remove")
    else:
        print_success(f"removed {removed}")


def register(app: typer.Typer) -> None:
    runtime_app.command("install", epilog=examples_epilog(EXAMPLES[:1] + EXAMPLES[3:]))(install_command)
    runtime_app.command("info", epilog=examples_epilog(EXAMPLES[1:3]))(info_command)
    runtime_app.command("remove")(remove_command)
    app.add_typer(runtime_app, name="runtime", epilog=examples_epilog(EXAMPLES))
