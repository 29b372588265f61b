"""The ``hubgate`` command line: run the service, run the demo, write configuration."""

from __future__ import annotations

import argparse
import sys


def _service(argv: list[str]) -> int:
    from .hub_service.app import main

    main(argv)
    return 0


def _demo(argv: list[str]) -> int:
    from .demo import main

    return main(argv)


def _generate_config(argv: list[str]) -> int:
    from .hub_service.app import HubgateService

    parser = argparse.ArgumentParser(
        prog="hubgate generate-config",
        description="Print a hubgate_config.py with every option and its help.",
    )
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = HubgateService().generate_config_file()
    if args.output:
        with open(args.output, "x") as f:
            f.write(text)
        print(f"Wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _generate_key(argv: list[str]) -> int:
    from cryptography.fernet import Fernet

    argparse.ArgumentParser(
        prog="hubgate generate-key",
        description="Print a new encryption key for HubgateService.encryption_keys.",
    ).parse_args(argv)
    print(Fernet.generate_key().decode())
    return 0


COMMANDS = {
    "service": (_service, "run the hubgate service (as a JupyterHub service)"),
    "demo": (_demo, "start a JupyterHub on 127.0.0.1 with hubgate, demo users and JupyterLab"),
    "generate-config": (_generate_config, "print a hubgate_config.py with every option"),
    "generate-key": (_generate_key, "print a new encryption key"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hubgate <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<16} {text}")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from ._version import __version__

        print(__version__)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(
            f"hubgate: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return command[0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
