from tinybert_infer.cli.main import run

run()
