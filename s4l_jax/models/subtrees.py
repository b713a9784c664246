"""Top-level parameter subtrees named in a config (`trainable`, `init_take`)."""
from typing import Sequence

HEAD_PREFIX = "head_"


def select(spec: str, names: Sequence[str], key: str) -> list[str]:
  """Names of `names` (top-level modules: `trunk`, `head_classes`, ...) chosen by `spec`.

  `spec`: `all`, or a `+`-separated list of `heads` (every `head_*`), top-level names, or
  head shorthands (`classes` for `head_classes`, `proj_1` for `head_proj_1`). Returns them
  in `names` order; an unknown name fails in one line naming `key` and the valid ones.
  """
  names = list(names)
  if spec == "all":
    return names
  chosen = set()
  for part in spec.split("+"):
    if part == "heads":
      chosen.update(n for n in names if n.startswith(HEAD_PREFIX))
    elif part in names or HEAD_PREFIX + part in names:
      chosen.add(part if part in names else HEAD_PREFIX + part)
    else:
      raise ValueError(f"{key}={spec!r}: unknown subtree {part!r}; valid: all, heads, "
                       f"{', '.join(names)} (joined with +)")
  return [n for n in names if n in chosen]
