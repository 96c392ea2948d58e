"""``claudegate serve --workers N``: more than one worker without Redis is refused at once, with a message
that says why and what to do, and exit status 2 (a usage error), before anything starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from claudegate.cli import command


@pytest.mark.parametrize(("args", "env"), [(["--workers", "3"], {}), ([], {"CLAUDEGATE_WORKERS": "2"})])
def test_several_workers_without_redis_are_refused(args: list[str], env: dict[str, str]) -> None:
    isolated = {"CLAUDEGATE_REDIS_URL": None, "COLUMNS": "200", **env}
    with CliRunner().isolation(env=isolated) as (_out, err, _output):
        with pytest.raises(SystemExit) as done:
            command().main(["serve", "--port", "0", *args], prog_name="claudegate")
        message = err.getvalue().decode()
    assert done.value.code == 2
    assert "workers need redis_url" in message
    assert "claudegate gateway on" not in message  # nothing was started
