from llmdeploy_cli.cli.app import main

main()
