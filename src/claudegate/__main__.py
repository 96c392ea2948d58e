from claudegate.cli import main

main()
