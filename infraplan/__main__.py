from infraplan.cli import main

main()
