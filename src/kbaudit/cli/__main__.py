from kbaudit.cli.main import main

main()
