from sirem_cli.cli import main

main()
