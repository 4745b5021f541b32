from chrysopolis.cli import main

main()
