from diffplan.cli import main

main()
