import subprocess
import sys


def test_import_does_no_heavy_work():
    code = (
        "import sys, arbitrage, routers, reward, routers.random, routers.learned, arbitrage.config;"
        "heavy = [m for m in ('torch', 'litellm', 'transformers', 'datasets') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_names_resolve():
    import arbitrage

    for name in arbitrage.__all__:
        assert getattr(arbitrage, name) is not None


def test_cli_default_config_prints_yaml(capsys):
    from arbitrage.commands.cli import main

    assert main(["default-config"]) == 0
    assert "local/smollm2-135m-instruct" in capsys.readouterr().out
