"""Command-line flags with YAML presets: `--config X.yaml` sets defaults, flags on the command line win."""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from modules.engine.checkpoint import atomic_write

# Dests that a preset may not set: `config` would nest presets (a saved run config carries it as provenance,
# so it is accepted and ignored), `local_rank` is a leftover of the old launcher and means nothing here.
_NOT_SETTABLE = {"help", "config", "local_rank"}


def _has_option(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--config` and the old launcher's `--local_rank` once, so a parser may be reused."""
    if not _has_option(parser, "--config"):
        parser.add_argument("--config", type=str, default=None,
                            help="YAML file of flag defaults (keys are flag names); command-line flags win")
    if not _has_option(parser, "--local_rank") and not _has_option(parser, "--local-rank"):
        # torch.distributed.launch passes one of these; ranks are read from the environment instead.
        parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                            help=argparse.SUPPRESS)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of flag names to values; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of flag names to values, got {type(data).__name__}")
    return data


def _convert(action: argparse.Action, value: Any, path: Path, key: str) -> Any:
    """Apply the flag's `type` to a YAML value (element-wise for list flags); errors name the file and key."""
    is_list_flag = action.nargs not in (None, "?")
    if isinstance(value, list) and not is_list_flag:
        raise SystemExit(f"{path}: key '{key}' has a list value {value!r}, expected a single value")
    if value is None or action.type is None:
        return value
    try:
        if isinstance(value, list):
            return [action.type(v) for v in value]
        return action.type(value)
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"{path}: key '{key}': {err}") from None
    except (TypeError, ValueError):
        type_name = getattr(action.type, "__name__", str(action.type))
        raise SystemExit(f"{path}: key '{key}' has value {value!r}, expected {type_name}") from None


def _check_choices(action: argparse.Action, value: Any, path: Path, key: str) -> None:
    """argparse does not check defaults against `choices`, so a preset is checked here."""
    if not action.choices or value is None:
        return
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if v not in action.choices]
    if bad:
        raise SystemExit(f"{path}: key '{key}' has value {bad[0]!r}, expected one of {list(action.choices)}")


def _actions_by_key(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Preset keys: each flag's destination and every option name without its dashes (aliases too)."""
    actions = {}
    for action in parser._actions:
        if action.dest in _NOT_SETTABLE:
            continue
        actions[action.dest] = action
        for option in action.option_strings:
            actions.setdefault(option.lstrip("-"), action)
    return actions


def _preset_defaults(parser: argparse.ArgumentParser, path: Path, not_used: frozenset[str]) -> dict[str, Any]:
    """Validate a preset against the parser's flags and return the defaults it sets (by destination)."""
    try:
        data = load_config(path)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    actions = _actions_by_key(parser)
    defaults, skipped = {}, []
    for key, value in data.items():
        if key == "config":
            continue
        if key not in actions and key in not_used:
            skipped.append(key)
            continue
        if key not in actions:
            close = difflib.get_close_matches(str(key), list(actions), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise SystemExit(f"{path}: unknown key '{key}' (not a flag of this program){hint}")
        action = actions[key]
        value = _convert(action, value, path, key)
        _check_choices(action, value, path, key)
        # A required flag given by the preset no longer has to be on the command line.
        action.required = False
        defaults[action.dest] = value
    if skipped:
        print(f"{path}: keys not used by this program: {', '.join(skipped)}", file=sys.stderr)
    return defaults


def _given_on_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """Destinations that `argv` itself sets: argparse leaves an attribute alone that the namespace already has,
    so a namespace pre-filled with a marker shows which flags were given."""
    marker = object()
    namespace = argparse.Namespace(**{a.dest: marker for a in parser._actions if a.dest != "help"})
    parser.parse_args(argv, namespace=namespace)
    return {dest for dest, value in vars(namespace).items() if value is not marker}


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None,
                      not_used: frozenset[str] = frozenset(), explicit: set[str] | None = None
                      ) -> argparse.Namespace:
    """Parse `argv` with YAML defaults from `--config`; command-line flags win over the preset.

    Preset keys are flag names (a flag's aliases work too). Unknown keys stop with one line naming the file and
    the key; keys in `not_used` (another script's flags in a preset it shares, e.g. an evaluation reading a training
    preset) are skipped and listed on stderr. `--local_rank N` / `--local-rank N` are accepted for the old launcher and
    dropped from the result (ranks come from the environment). `explicit`, when given, receives the destinations
    that the preset or the command line set (the rest are the parser's defaults).
    """
    _add_common_flags(parser)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=str, default=None)
    known, _ = pre.parse_known_args(argv)
    preset = {}
    if known.config is not None:
        preset = _preset_defaults(parser, Path(known.config), not_used)
        parser.set_defaults(**preset)
    args = parser.parse_args(argv)
    if explicit is not None:
        explicit.update(preset, _given_on_command_line(parser, argv))
        explicit.discard("local_rank")
    if hasattr(args, "local_rank"):
        del args.local_rank
    return args


def plain(value: Any) -> Any:
    """YAML-safe form of a resolved flag value (paths and tuples become strings and lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def save_config(cfg: argparse.Namespace, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(plain(vars(cfg)), sort_keys=True, default_flow_style=False)
    atomic_write(path, lambda f: f.write(text.encode()))
