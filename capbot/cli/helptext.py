"""One way `capbot ... --help` reads everywhere, whoever wrote the command.

typer renders each option's Python type (`<bool>`, `<list[Path]>`, `<int range>`), writes required
arguments as `{images}...`, keeps a docstring's hard line breaks inside sentences, and shows defaults as
`[default: 8]` next to the help texts' own "(default: CAPBOT_MODEL)". `polish` walks the built command tree
once, before it runs, and sets what click lets a program set:

- a value's placeholder names what to type (TEXT, INTEGER, NUMBER, PATH, or the choices `auto|cpu|cuda`);
  a flag has none; an argument is its name in capitals (`IMAGE...`, `[HUB_ID]`);
- help paragraphs are joined into running text (the terminal wraps them);
- every default is written "(default: X)" at the end of its help text: the ones the help states itself
  (a setting, e.g. "(default: CAPBOT_MODEL)") and the value ones typer would show in brackets;
- commands are listed in the order a newcomer meets them (`COMMAND_ORDER`), new ones after those.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

# The order of each group's commands in `--help` (by group path); commands not named keep their order after these.
COMMAND_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("run", "caption", "models", "data", "train", "tensorboard", "evaluate", "feedback", "retrain", "db",
         "forget-user", "modal"),
    ("models",): ("init", "import", "list", "promote", "rollback"),
}
STATED_DEFAULT = re.compile(r"\s*\(default: ([^\n]+)\)\.?$")
_TYPE_PLACEHOLDERS = {"int": "INTEGER", "integer": "INTEGER", "float": "NUMBER", "path": "PATH", "datetime": "TIME"}


def polish(command: Any, path: tuple[str, ...] = ()) -> Any:
    """Make `command` (a click command or group built by typer) and everything under it read as described in
    the module docstring; returns it."""
    command.help = running_text(command.help)
    # click makes the --help option when first asked for it (and keeps it): ask now, to polish it too.
    help_option = command.get_help_option(command.context_class(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.param_type_name == "argument":
            _polish_argument(param)
        else:
            _polish_option(param)
    subcommands = getattr(command, "commands", None)
    if subcommands:
        order = COMMAND_ORDER.get(path, ())
        ranked = sorted(subcommands, key=lambda name: order.index(name) if name in order else len(order))
        command.commands = {name: subcommands[name] for name in ranked}
        for name, sub in command.commands.items():
            polish(sub, (*path, name))
    return command


def running_text(help_text: str | None) -> str | None:
    """`help_text` with the line breaks inside each paragraph turned into spaces (paragraphs stay apart;
    click's `\\b` paragraphs, which ask to be kept as written, are kept)."""
    if not help_text:
        return help_text
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def placeholder(param: Any) -> str:
    """What an option's value is called in help: TEXT, INTEGER, NUMBER, PATH, or its choices."""
    described = getattr(param, "type_descriptor", None)  # typer's own parameters
    if described is None:  # a plain click parameter
        choices, kind = getattr(param.type, "choices", None), getattr(param.type, "name", "text").split()[0]
    else:
        choices = described.choices
        kind = "path" if described.is_path else getattr(described.annotation, "__name__", "str").lower()
    if choices:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    return _TYPE_PLACEHOLDERS.get(kind, "TEXT")


def _polish_option(param: Any) -> None:
    param.help = running_text(param.help)
    if getattr(param, "is_flag", False):
        param.metavar = ""  # a flag takes no value: nothing to name
    elif param.metavar is None:
        param.metavar = placeholder(param)
    param.help = with_default(param.help, default_text(param))
    param.show_default = False


def with_default(help_text: str | None, value: str) -> str | None:
    """`help_text` as a sentence ending "(default: X)": the default it states itself, else `value` (if any)."""
    body = help_text or ""
    stated = STATED_DEFAULT.search(body)
    if stated:
        body, value = body[:stated.start()], stated.group(1)
    body = body.rstrip()
    if body and body[-1] not in ".!?":
        body += "."
    return f"{body} (default: {value})".strip() if value else (body or help_text)


def default_text(param: Any) -> str:
    """The default worth stating for an option ('' for none): its value, or for an on/off pair the form that
    is on (`--register`); flags that are off and options without a value state nothing."""
    default = param.default
    if callable(default) or default is None or param.required:
        return ""
    if getattr(param, "is_flag", False):
        if not param.secondary_opts:
            return ""
        return param.opts[0] if default else param.secondary_opts[0]
    if isinstance(default, (list, tuple)):
        return ", ".join(str(d) for d in default)
    return str(getattr(default, "value", default))


def _polish_argument(param: Any) -> None:
    param.help = running_text(param.help)
    if param.metavar is None:
        param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
    usage = param.metavar if param.required else f"[{param.metavar}]"
    param.help = with_default(param.help, default_text(param))
    param.show_default = False
    # typer draws an argument's Python type beside its name and wraps a required one in braces; click reads
    # these two methods of the parameter, so this argument answers for itself.
    param.display_type_rich = lambda ctx: None
    param.get_usage_pieces = lambda ctx: [usage]
