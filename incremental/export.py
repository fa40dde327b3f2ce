"""Export a model file to ONNX (class names in the metadata) or TorchScript."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from incremental.models import load_model_file


def export_model(
    model_path: str | Path,
    out: str | Path,
    *,
    fmt: str = "onnx",
    size: int = 64,
    overwrite: bool = False,
    allow_factory: bool = False,
) -> Path:
    """Write ``out`` from the model file at ``model_path``.

    ONNX: input ``image`` (B, 3, H, W) normalised like training, output ``logits``
    (B, C, H, W), batch, height and width dynamic (H, W multiples of 32); metadata
    ``classes`` and ``parents`` hold JSON. TorchScript: a traced module with the class names
    in the archive's extra file ``classes.json``. ``allow_factory``: as in
    :func:`~incremental.predict.predict_folder`.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be 'onnx' or 'torchscript', got {fmt!r}")
    model_file = load_model_file(model_path)
    model = model_file.build(allow_factory=allow_factory)
    example = torch.zeros(1, 3, size, size)
    meta = {"classes": model_file.classes, "parents": model_file.parents}
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(out), _extra_files={"classes.json": json.dumps(meta)})
        return out
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=17,
        )
    proto = onnx.load(str(out))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(out))
    return out
