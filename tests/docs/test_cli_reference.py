"""``docs/cli-reference.md`` is exactly what the CLI's ``--help`` says now."""

from tests.docs import gen_cli_reference


def test_cli_reference_is_current() -> None:
    expected = gen_cli_reference.render()
    assert gen_cli_reference.PAGE.read_text() == expected, (
        "docs/cli-reference.md is out of date: run `python -m tests.docs.gen_cli_reference` and commit it"
    )
    assert "#### `metaxy migrations apply`" in expected
