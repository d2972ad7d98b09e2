from ablate.cli import app

app()
