from mbdeploy.cli import main

main()
