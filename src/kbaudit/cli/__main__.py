from kbaudit.cli.main import app

app(prog_name="kbaudit")
