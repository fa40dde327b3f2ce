"""Command line: ``python -m incremental COMMAND ...`` (also installed as ``incremental``).

A thin layer over importable functions, so tests call :func:`main` in-process. Each command is
one ``_add_<command>`` function that adds its sub-parser and sets ``run`` (args -> exit code);
list it in :data:`COMMANDS`. Commands import their machinery when run, so ``--help`` and one
command never pay for another's imports.

Exit codes: 0 success, 1 the command found problems, 2 usage error.
"""

from __future__ import annotations

import argparse
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
    from incremental.data.check import check_command

    return check_command(args.datasets, classes=args.classes)


def _class_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated class names, got {text!r}")
    return names


# ---------------------------------------------------------------------------------- main
#: One function per command; each adds its sub-parser and sets ``run``.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_check,)


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
