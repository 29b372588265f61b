"""The ``hubgate`` command line: run the service, run the demo, write configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _service(argv: list[str]) -> int:
    from ..hub_service.app import main

    main(argv)
    return 0


def _demo(argv: list[str]) -> int:
    from .demo import main

    return main(argv)


def _generate_config(argv: list[str]) -> int:
    from ..hub_service.app import HubgateService

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


def _upgrade_db(argv: list[str]) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from ..hub_service.app import HubgateService
    from ..hub_service.schema import SchemaError, prepare_schema
    from ..hub_service.store import metadata

    parser = argparse.ArgumentParser(
        prog="hubgate upgrade-db",
        description="Upgrade the service's database to this hubgate's schema. Stop the "
        "service first. A SQLite file is copied beside itself first (<file>.<time>.bak); "
        "back up any other database yourself.",
    )
    parser.add_argument("--config", help="the service's hubgate_config.py (for db_url)")
    parser.add_argument("--db-url", help="the database's SQLAlchemy URL (default: db_url)")
    args = parser.parse_args(argv)
    if args.config and not Path(args.config).is_file():
        print(f"hubgate upgrade-db: no configuration file {args.config}", file=sys.stderr)
        return 2
    service = HubgateService()
    service.initialize(["--config", args.config] if args.config else [])
    engine = create_engine(args.db_url or service.db_url)
    shown = engine.url.render_as_string(hide_password=True)
    sqlite_file = engine.url.database if engine.dialect.name == "sqlite" else None
    if sqlite_file and not Path(sqlite_file).is_file():
        # never create an empty database where the operator expected theirs
        print(f"hubgate upgrade-db: there is no database at {shown}", file=sys.stderr)
        return 1
    try:
        done = prepare_schema(engine, metadata, upgrade=True)
    except SchemaError as exc:
        print(f"hubgate upgrade-db: {shown}: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:  # unreachable, or locked by a running service
        hint = " (stop the service first)" if "locked" in str(exc.orig) else ""
        print(f"hubgate upgrade-db: cannot use {shown}: {exc.orig}{hint}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if done.before is None:
        print(f"{shown} was empty: created its tables at schema revision {done.after}")
    elif not done.changed:
        print(f"{shown} is at this hubgate's schema revision {done.after} already")
    else:
        print(f"Upgraded {shown} from schema revision {done.before} to {done.after}")
        if done.backup:
            print(f"The database before the upgrade: {done.backup}")
    return 0


COMMANDS = {
    "service": (_service, "run the hubgate service (as a JupyterHub service)"),
    "demo": (_demo, "start a JupyterHub on 127.0.0.1 with hubgate, demo users and JupyterLab"),
    "generate-config": (_generate_config, "print a hubgate_config.py with every option"),
    "generate-key": (_generate_key, "print a new encryption key"),
    "upgrade-db": (_upgrade_db, "upgrade the service's database to this version's schema"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hubgate <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<16} {text}")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from .._version import __version__

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
