"""``cultural-music export``."""

from __future__ import annotations

import click


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--onnx", "to_onnx", is_flag=True, help="Write MODEL_DIR/model.onnx (checked against PyTorch).")
@click.option("--opset", type=click.IntRange(11, 21), default=17, show_default=True, help="ONNX opset version.")
def export(model_dir: str, to_onnx: bool, opset: int) -> None:
    """Export MODEL_DIR's network for use outside PyTorch."""
    if not to_onnx:
        raise click.UsageError("choose a format: --onnx")
    from cultural_music.inference.export import export_onnx

    res = export_onnx(model_dir, opset=opset)
    click.echo(f"wrote {res['path']} (probabilities match PyTorch within {res['max_abs_diff']:.1e}; "
               f"predict with: cultural-music predict {model_dir} FILES --onnx)")
