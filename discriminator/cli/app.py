"""`kit`: the SN34 miner submission kit's command line."""

from __future__ import annotations

from typing import Optional

import typer

from discriminator import __version__
from discriminator.cli import build, models
from discriminator.cli import check, package
from discriminator.cli import bench
from discriminator.cli import cache
from discriminator.cli import data
from discriminator.cli import runtime
from discriminator.cli import train
from discriminator.cli.common import TYPER_SETTINGS, examples_epilog

EXAMPLES = [
    ("make demo", "the whole workflow on built-in demo data"),
    ("kit models", "list the detectors kit can build"),
    ("kit train video --data my_data/train --val my_data/val", "train and calibrate the example video detector → runs/video/"),
    ("kit build video --model runs/video --name my-detector", "the verified bundle to push + its ONNX twin → submissions/my-detector/"),
    ("kit runtime install", "once per machine: the evaluator's library versions, which every bundle check then runs under"),
    ("kit check submissions/my-detector", "catch contract mistakes (exit 1 when a rule fails)"),
    ("kit bench submissions/my-detector --data my_data/test", "score it exactly as the validator would"),
    ("kit package submissions/my-detector --hotkey <SS58>", "write the zip to push with gascli"),
]

app = typer.Typer(
    name="kit",
    help="Miner submission kit for Bittensor Subnet 34: build, check, bench and package real/AI detectors.",
    epilog=examples_epilog(EXAMPLES),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    **TYPER_SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the kit version and exit."),
) -> None:
    """Miner submission kit for Bittensor Subnet 34."""


models.register(app)
build.register(app)
check.register(app)
package.register(app)
bench.register(app)
cache.register(app)
data.register(app)
train.register(app)
runtime.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
