from quantsuite.cli import main

main()
