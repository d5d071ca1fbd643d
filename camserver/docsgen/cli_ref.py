"""The command-line reference, from the argparse parsers of camserver, the simulator and the inference service."""

from __future__ import annotations

import argparse
from typing import Callable

SUPPRESS = argparse.SUPPRESS


def _parsers() -> list[tuple[str, Callable[[], argparse.ArgumentParser], str]]:
    from ..cli import build_parser as camserver_parser
    from ..sim.simcam import build_parser as sim_parser

    parsers = [("camserver", camserver_parser, "`python -m camserver` or the `camserver` script. Every flag "
                "overrides the `config.toml` key named beside it.")]
    parsers.append(("python -m camserver.sim", sim_parser, "The camera simulator: it speaks to the server exactly "
                    "as the firmware does."))
    from ..infer.service import build_parser as infer_parser

    parsers.append(("camserver-infer", infer_parser, "The shared inference service on NVIDIA Triton "
                    "(`python -m camserver.infer`)."))
    return parsers


def _flag_keys() -> dict[str, list[tuple[str, str]]]:
    from ..cli import FLAG_KEYS

    return FLAG_KEYS


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices:
        return " | ".join(str(c) for c in action.choices)
    return str(action.metavar or action.dest.upper())  # a tuple metavar is for nargs > 1, unused here


def parser_table(name: str, parser: argparse.ArgumentParser, keys: dict[str, list[tuple[str, str]]]) -> list[str]:
    """One parser's flags as a Markdown table."""
    from . import cell

    with_keys = name == "camserver"
    head = "| flag | value | default | config key | what |" if with_keys else "| flag | value | default | what |"
    out = [head, "| --- | --- | --- | --- | --- |" if with_keys else "| --- | --- | --- | --- |"]
    for action in parser._actions:  # argparse's own list: the order of --help
        if not action.option_strings or action.help == SUPPRESS:
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings)
        default = "" if action.default in (None, False, SUPPRESS) else "`" + (str(action.default) or '""') + "`"
        row = [flags, cell(_value(action)), default]
        if with_keys:
            row.append(", ".join(f"`{t}.{k}`" for t, k in keys.get(action.dest, [])))
        row.append(cell(action.help or ""))
        out.append("| " + " | ".join(row) + " |")
    return out


def cli_page() -> str:
    """The command-line reference page."""
    out = ["# Command line", "",
           "The flags of each program, from its argument parser. Exit codes: 0 clean stop; 1 a stage's task died "
           "(the log says which); 2 bad configuration or flags; 3 could not start (model not loadable, port in use)."]
    keys = _flag_keys()
    for name, build, intro in _parsers():
        out += ["", f"## `{name}`", "", intro, ""]
        out += parser_table(name, build(), keys)
    return "\n".join(out) + "\n"
