from promptd.cli import main

main()
