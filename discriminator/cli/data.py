"""`kit data`: datasets for training and benching; `kit data demo` writes the built-in demo data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from discriminator.cli.common import TYPER_SETTINGS, console, examples_epilog, kit_command, print_success
from discriminator.errors import KitError

DEMO_EXAMPLES = [
    ("kit data demo --out demo_data", "image and video demo data, train/val/test splits, seed 0"),
    ("kit data demo --out demo_data --modality video --size medium", "a larger video-only set"),
    ("kit data demo --out demo_data --seed 7 --force", "a different draw, replacing the earlier one"),
]

data_app = typer.Typer(
    name="data",
    help="Datasets for training and benching detectors.",
    no_args_is_help=True,
    **TYPER_SETTINGS,
)


@kit_command
def demo_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write train/, val/, test/ and README.txt into."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same files (byte for byte on one machine)."),
    size: str = typer.Option("small", "--size", help="small (about 30 s on 2 idle cores; enough for the demo), medium (about twice the samples), or tiny (smoke tests)."),
    modality: str = typer.Option("both", "--modality", "-m", help="image, video or both."),
    workers: int = typer.Option(0, "--workers", help="Processes drawing samples; 0 = one per CPU core. The files do not depend on it."),
    force: bool = typer.Option(False, "--force", help="Replace demo data already in --out."),
) -> None:
    """Generate the built-in demo data: real, synthetic and semisynthetic images and videos in every format the validator reads."""
    from discriminator.demo_data import generate_demo_data
    from discriminator.demo_data.generate import INCOMPLETE_MARKER, MEDIA_TYPES, MODALITY_CHOICES, SPLITS

    try:
        summary = generate_demo_data(out, seed=seed, size=size, modality=modality, force=force, workers=workers)
    except KeyboardInterrupt:
        raise KitError(f"interrupted: the splits in {out} are partial (marked by {out / INCOMPLETE_MARKER})",
                       f"regenerate with `kit data demo --out {out} --force`", exit_code=130) from None

    table = Table(title=f"Demo data in {out} (seed {seed}, size {size})")
    table.add_column("split")
    table.add_column("modality")
    for media_type in MEDIA_TYPES:
        table.add_column(media_type, justify="right")
    for split in SPLITS:
        for kind in MODALITY_CHOICES[modality]:
            table.add_row(split, kind, *(str(summary.count(split, kind, media_type)) for media_type in MEDIA_TYPES))
    console.print(table)
    datasets = len({record.dataset for record in summary.datasets})
    print_success(
        f"wrote {summary.count()} samples in {datasets} datasets ({summary.total_bytes / 1e6:.1f} MB) "
        f"in {summary.seconds:.1f} s; next: kit bench ... --data {out / 'test'}"
    )


def register(app: typer.Typer) -> None:
    data_app.command("demo", epilog=examples_epilog(DEMO_EXAMPLES))(demo_command)
    app.add_typer(data_app, name="data")
