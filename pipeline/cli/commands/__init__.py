"""One module per `pile` subcommand (NAME, HELP, add_arguments, run); discovered automatically."""
