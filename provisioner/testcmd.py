"""``provisioner test``: the coordinator's own examples rendered through the mappings.

See :mod:`provisioner.mapping.golden` for the examples and the comparison, and "Testing your
mappings" in docs/mappings.md for the file format.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from provisioner import log
from provisioner.mapping.golden import Renderer, default_examples, load_examples, run_examples
from provisioner.pipeline import desired_state, prepare
from provisioner.report.golden import render_outcomes


def add_test_command(commands: Any) -> None:
    """Register ``test`` on the subcommands of the main parser."""
    test = commands.add_parser(
        "test",
        help="check the mappings against your own examples of persons and their accounts",
        description="Render example persons (made-up source rows) through the mappings and "
        "compare the accounts and groups made with those the examples expect: PASS or FAIL "
        "per example, with every difference. Neither the source nor the directory is "
        "contacted, so no password is needed. Exit 1 when an example fails.",
    )
    test.add_argument("--config", required=True, type=Path, metavar="FILE")
    test.add_argument(
        "--examples",
        type=Path,
        metavar="PATH",
        help="an example file or a folder of them (default: the tests folder next to the "
        "mapping files, e.g. mappings/tests/)",
    )
    test.set_defaults(handler=run_test)


def run_test(args: argparse.Namespace) -> int:
    prepared = prepare(args.config)
    assert prepared.config.mappings is not None  # prepare refuses a configuration without
    examples = load_examples(args.examples or default_examples(prepared.config.mappings))
    renderer = Renderer(
        datasets=prepared.source.datasets(),
        units=prepared.source.units(),
        read=list(prepared.fields),
        # As a first night renders: no names in use yet, the target's naming rules checked.
        render=lambda read: desired_state(prepared, read),
    )
    outcomes = run_examples(examples, renderer)
    failed = [outcome.example.name for outcome in outcomes if not outcome.passed]
    log.event("tested the mappings", examples=len(outcomes), failed=failed)
    print(render_outcomes(outcomes))
    # No examples at all is a failure too: nothing was checked.
    return 0 if outcomes and not failed else 1
