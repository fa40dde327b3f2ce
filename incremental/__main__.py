"""Command line: ``python -m incremental COMMAND ...`` (also installed as ``incremental``).

A thin layer over importable functions, so tests call :func:`main` in-process. Each command is
one ``_add_<command>`` function that adds its sub-parser and sets ``run`` (args -> exit code);
list it in :data:`COMMANDS`. Commands import their machinery when run, so ``--help`` and one
command never pay for another's imports.

Exit codes: 0 success, 1 ``check`` found problems, 2 a usage error or an input a command cannot
use (a damaged or unsafe model file, an unreadable image, an existing output).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EXIT_USAGE = 2


# ---------------------------------------------------------------------------------- check
def _add_check(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check dataset folders and their YAML before training",
        description="Check dataset folders (images/, masks/, a YAML each): print a summary of "
        "each and every problem, one per line as 'path: message'. Exit code 0 if all are "
        "clean, 1 if there are problems.",
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET.yaml", help="dataset YAML files")
    parser.add_argument(
        "--classes",
        type=_class_list,
        metavar="A,B,C",
        help="comma-separated class names of the experiment; other names in a YAML are problems",
    )
    parser.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from incremental.data.folders.check import check_command

    return check_command(args.datasets, classes=args.classes)


def _class_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated class names, got {text!r}")
    return names


# ---------------------------------------------------------------------------------- predict
def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict masks for a folder of images",
        description="Write one indexed PNG mask per image (pixel value = class index, with a "
        "palette) and classes.json beside them. Refuses to overwrite unless --overwrite.",
    )
    parser.add_argument("--model", required=True, help="model file (.pt) written by a run")
    parser.add_argument("--images", required=True, help="folder of images (any size)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--level",
        choices=["class", "parent"],
        default="class",
        help="'parent' merges split children into their parent class",
    )
    parser.add_argument("--overlay", action="store_true", help="also write colour overlays")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N"
    )
    parser.add_argument("--overwrite", action="store_true")
    _add_allow_factory(parser)
    parser.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from incremental.predict import predict_folder

    try:
        written = predict_folder(
            args.model,
            args.images,
            args.out,
            level=args.level,
            overlay=args.overlay,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            device=args.device,
            allow_factory=args.allow_factory,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {len(written)} mask(s) to {args.out}")
    return 0


def _add_allow_factory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-factory",
        action="store_true",
        help="build a model whose network comes from your own code (its file names a "
        "'package.module:function' factory); importing it runs that code",
    )


# ---------------------------------------------------------------------------------- export
def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model file to ONNX or TorchScript",
        description="Export a model file; ONNX carries the class names in its metadata.",
    )
    parser.add_argument("--model", required=True, help="model file (.pt) written by a run")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--overwrite", action="store_true")
    _add_allow_factory(parser)
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from incremental.export import export_model

    try:
        path = export_model(
            args.model,
            args.out,
            fmt=args.format,
            overwrite=args.overwrite,
            allow_factory=args.allow_factory,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------- audit
def _add_audit(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="find new classes hiding unlabeled in the old data",
        description="Rank the old images by the area labeled as background (a new class) or "
        "as the split parent (a split) that the new model assigns to a created class; write "
        "audit.csv and thumbnails of the top images (suspect pixels in magenta) to relabel.",
    )
    parser.add_argument("--model", required=True, help="model file of a step (.pt)")
    parser.add_argument("--dataset", required=True, help="the old dataset's YAML")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--classes", type=_class_list, metavar="A,B", help="created classes to look for"
    )
    parser.add_argument("--top", type=int, default=50, help="thumbnails for the top N rows")
    parser.add_argument(
        "--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N"
    )
    parser.add_argument("--overwrite", action="store_true")
    _add_allow_factory(parser)
    parser.set_defaults(run=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    from incremental.audit import audit_dataset
    from incremental.data.core import DatasetError

    try:
        rows = audit_dataset(
            args.model,
            args.dataset,
            args.out,
            classes=args.classes,
            top=args.top,
            device=args.device,
            overwrite=args.overwrite,
            allow_factory=args.allow_factory,
        )
    except (FileNotFoundError, FileExistsError, ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{len(rows)} suspect (image, class) pair(s); wrote {args.out}/audit.csv")
    for row in rows[:5]:
        print(f"  {row.rank}. {row.image}: {row.cls} on {100 * row.image_share:.1f}% of the image")
    return 0


# ---------------------------------------------------------------------------------- main
#: One function per command; each adds its sub-parser and sets ``run``.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_check,
    _add_predict,
    _add_export,
    _add_audit,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m incremental",
        description="Add and split classes of a trained segmentation model: data checks and "
        "tools. Training runs with 'python -m experiments.run'.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help (0) and usage errors (2); return the code instead, so that
        # in-process callers (tests) get it like any other.
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
