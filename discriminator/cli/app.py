"""`kit`: the SN34 miner submission kit's command line."""

from __future__ import annotations

from typing import Optional

import typer

from discriminator import __version__
from discriminator.cli import build, models
from discriminator.cli import check, package
from discriminator.cli import bench
from discriminator.cli import data
from discriminator.cli import train
from discriminator.cli.common import examples_epilog

EXAMPLES = [
    ("make demo", "the whole workflow on built-in demo data"),
    ("kit models", "list the detectors kit can build"),
    ("kit build video --model example-video", "export the example video detector to submissions/example-video/"),
    ("kit build image --model hf:./my-finetuned-vit --name my-vit", "export a Hugging Face classifier saved with save_pretrained"),
]

app = typer.Typer(
    name="kit",
    help="Miner submission kit for Bittensor Subnet 34: build, check, bench and package real/AI detectors.",
    epilog=examples_epilog(EXAMPLES),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
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
data.register(app)
train.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
