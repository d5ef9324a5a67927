from infraplan.cli.main import main

main()
