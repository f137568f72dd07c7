"""`kit cache info|clear`: the preprocessed-pixel cache that `kit bench` and `kit train` read before decoding."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from discriminator.cli.common import TYPER_SETTINGS, console, examples_epilog, kit_command, print_success

if TYPE_CHECKING:
    from validator_sim.pixel_cache import PixelCache

EXAMPLES = [
    ("kit cache info", "where the cache is, how full, and which profile/size/frame settings it holds"),
    ("kit cache clear", "delete every cached sample (the next bench decodes again)"),
    ("KIT_CACHE_SIZE=50G kit bench model.onnx --data data/", "a larger bound for one command (default 10G)"),
    ("KIT_CACHE_DIR=/scratch/kit kit cache info", "a cache folder on another disk"),
]

cache_app = typer.Typer(
    name="cache",
    help="The preprocessed-pixel cache: samples decoded once per profile, size and frame count, reused by later benches.",
    no_args_is_help=True,
    epilog=examples_epilog(EXAMPLES),
    **TYPER_SETTINGS,
)


def _open(size: Optional[str]) -> "PixelCache":
    """The default cache; imported here so that `kit --help` does not load numpy and the decoders."""
    from validator_sim.pixel_cache import PixelCache, parse_size

    return PixelCache(limit_bytes=parse_size(size) if size is not None else None)


@cache_app.command("info", epilog=examples_epilog(EXAMPLES[:1]))
@kit_command
def info_command(
    size: Optional[str] = typer.Option(None, "--cache-size", help="Show the fill against this bound instead of $KIT_CACHE_SIZE / 10G."),
) -> None:
    """Where the cache is, how many samples it holds, its size and its bound."""
    from validator_sim.pixel_cache import format_size

    info = _open(size).info()
    console.print(f"location: {info.location}")
    console.print(f"entries:  {info.entries} ({info.errors} cached decode errors)")
    console.print(f"files:    {info.remembered_files} whose sha256 is remembered (reruns need not read them whole)")
    console.print(f"size:     {format_size(info.size)} of {format_size(info.limit)} "
                  f"({100 * info.size / info.limit:.0f} %; least recently used entries go first)")
    if info.recipes:
        table = Table(title="by recipe (profile, modality, size, frames)")
        for column, justify in (("recipe", "left"), ("entries", "right"), ("errors", "right"),
                                ("size", "right"), ("last used", "left")):
            table.add_column(column, justify=justify)
        for recipe in info.recipes:
            label = (recipe.description + f"\n[dim]id {recipe.digest}[/]"
                     + (f"\n[yellow]stale: {recipe.stale}[/]" if recipe.stale else ""))
            table.add_row(label, str(recipe.entries), str(recipe.errors), format_size(recipe.size),
                          datetime.fromtimestamp(recipe.last_used).strftime("%Y-%m-%d %H:%M"))
        console.print(table)
        stale = [r for r in info.recipes if r.stale]
        if stale:
            console.print(f"{len(stale)} stale recipe(s), {format_size(sum(r.size for r in stale))}: no run of this kit "
                          "reads them again; `kit cache clear` removes them (or they age out, least recently used first)")


@cache_app.command("clear", epilog=examples_epilog(EXAMPLES[1:2]))
@kit_command
def clear_command() -> None:
    """Delete every cached sample."""
    from validator_sim.pixel_cache import format_size

    cache = _open(None)
    entries, size = cache.clear()
    print_success(f"removed {entries} cached sample(s), {format_size(size)}, from {cache.root}")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
