"""The `chorus` command line as a parser: every option says what it does (issue 25:
`chorus peer join --help` had no text for --key, --pool, --max-concurrency)."""

import argparse

import pytest

from chorus_litellm.cli import build_parser


def commands(parser: argparse.ArgumentParser, name: str = "chorus"):
    """(command name, its parser) for `chorus` and every subcommand, nested ones too."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from commands(child, f"{name} {sub}")


COMMANDS = dict(commands(build_parser()))


def test_the_commands_are_all_there():
    assert {"chorus check", "chorus serve", "chorus eval", "chorus peer join", "chorus peer earnings",
            "chorus peer keygen", "chorus keygen", "chorus verify", "chorus reputation"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_a_help_text(name):
    missing = [action.option_strings[0] if action.option_strings else action.dest
               for action in COMMANDS[name]._actions
               if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help]
    assert not missing, f"{name}: no help for {missing}"


def test_peer_join_explains_key_pool_and_max_concurrency(capsys):
    from chorus_litellm.cli import main

    with pytest.raises(SystemExit):
        main(["peer", "join", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--key FILE this peer's key from `chorus peer keygen`" in text
    assert "--pool POOL the pool to join" in text
    assert "--max-concurrency N calls each proxy worker sends your server at once" in text
