"""absl command lines whose `--help` (and `--helpshort`, `--helpfull`) exits 0, not absl's 1."""
from absl import app


def parse_flags(argv, parse=app.parse_flags_with_usage):
  """`parse(argv)` (absl's default: a bad flag prints the usage, exits 1); a help flag, which
  absl ends with `sys.exit(1)` after printing the usage, exits 0."""
  try:
    return parse(argv)
  except SystemExit as e:
    if e.code == 1 and _asks_for_help(argv[1:]):
      raise SystemExit(0) from None
    raise


def _asks_for_help(args) -> bool:
  names = {a.lstrip("-").split("=", 1)[0] for a in args if a.startswith("-")}
  return bool(names & {"help", "?", "helpshort", "helpfull", "helpxml"})


def run(main):
  """`app.run(main)` with `parse_flags`."""
  app.run(main, flags_parser=parse_flags)
