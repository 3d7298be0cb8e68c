import subprocess
import sys

from typer.testing import CliRunner

from sirem_cli.cli import app

runner = CliRunner()


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom sirem_cli.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'finufft', 'librosa', 'transformers', 'h5py') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in res.stdout


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = [c.name for c in app.registered_commands]
    assert {"synth", "prepare"} <= set(names)
    for name in names:
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0, name
        assert "Usage" in sub.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("sirem ")
