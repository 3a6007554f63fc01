"""`lineage image build`: the task image the docker runner executes steps in."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, print_json, say

image_app = typer.Typer(help="The task image for containerized steps.", no_args_is_help=True)


@image_app.command("build")
def build_command(
    base_image: str = typer.Option(
        None,
        "--base-image",
        metavar="IMAGE",
        help="Image to build on (default: a local Debian base).",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
    json_out: bool = JsonOption,
) -> None:
    """Build (or find, cached by source hash) the task image; prints its digest."""
    from lineage.cli.project import load

    build = load("containers.build")

    def show(line: str) -> None:
        if not json_out:
            say(line.rstrip(), stderr=True)

    image = build.build_task_image(
        base_image or build.DEFAULT_BASE_IMAGE, force=force, progress=show
    )
    if json_out:
        print_json(
            {
                "tag": image.tag,
                "image_id": image.image_id,
                "base_image": image.base_image,
                "cached": image.cached,
                "seconds": round(image.seconds, 2),
            }
        )
    else:
        state = "up to date" if image.cached else f"built in {image.seconds:.0f} s"
        say(f"{image.tag} ({image.image_id}) {state}")


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
