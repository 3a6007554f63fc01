"""`lineage image build`: the task image the docker runner executes steps in."""

from __future__ import annotations

import typer

from lineage.cli.output import JsonOption, console, err_console, print_json

image_app = typer.Typer(help="The task image for containerized steps.", no_args_is_help=True)


@image_app.command("build")
def build_command(
    base_image: str = typer.Option(
        None, "--base-image", help="Image to build on (default: a local Debian base)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
    json_out: bool = JsonOption,
) -> None:
    """Build (or find, cached by source hash) the task image; prints its digest."""
    from containers.build import DEFAULT_BASE_IMAGE, build_task_image

    def show(line: str) -> None:
        if not json_out:
            err_console.print(line.rstrip(), markup=False, highlight=False)

    image = build_task_image(base_image or DEFAULT_BASE_IMAGE, force=force, progress=show)
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
        console.print(f"{image.tag} ({image.image_id}) {state}")


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
