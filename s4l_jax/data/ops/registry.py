"""The op registry and the grammar of one op call: `name` or `name(arg, ..., kw=value)`.

Ops register a factory by decorator (`register_op`, `register_crop`); the factory's arguments
are the op's parameters, with defaults, and it returns the op (`Op`, `Crop`). A view names an
op as a call with literal arguments, parsed with `ast` as big_vision's `pp/registry`
(`parse_call`); a bare name calls the factory with its defaults. This module imports no op
family: `s4l_jax.data.ops` imports them all, so that every op is registered.
"""
import ast
import dataclasses
import inspect
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Op:
  """An op on crops in [0, 1].

  `copies == 1`: random, `fn(rng, crop (S, S, C)) -> (S, S, C)`, vmapped with one key per crop.
  `copies > 1`, `random=False`: `fn(crops (N, S, S, C)) -> (N, copies, S, S, C)`; copy j gets
  label j under the batch key `label`.
  `copies > 1`, `random=True`: `fn(rng, crop (S, S, C)) -> (copies, s, s, C)`, or with a
  `label` `-> ((copies, s, s, C), int32 scalar)`, the label every copy of the crop gets;
  vmapped with one key per crop. Its copies may be smaller than the crop (tiles, s <= S).
  """
  fn: Callable
  copies: int = 1
  label: str | None = None
  random: bool = True


@dataclasses.dataclass(frozen=True)
class HostTwin:
  """A crop's tf.data twin: `name`, a host crop of `tf_views.HOST_TWINS`, called with the
  crop's parameters `kwargs` (kept as a name so that this module imports no TensorFlow)."""
  name: str
  kwargs: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Crop:
  """A crop op: `fn(rng, images (B, H, W, C) in [0, 1], size, view) -> (B * view.crops, S, S,
  C)`.

  random: whether `fn` uses `rng` (None is passed otherwise).
  view_fields: the `views.View` fields of a composition that starts with this op.
  host: its tf.data twin, None for a device-only crop (tf.data refuses it).
  """
  fn: Callable
  random: bool = True
  view_fields: dict = dataclasses.field(default_factory=dict)
  host: HostTwin | None = None


OPS: dict[str, Callable[..., Op]] = {}
CROPS: dict[str, Callable[..., Crop]] = {}


def _register(table: dict, name: str):
  def register(factory):
    if name in OPS or name in CROPS:
      raise KeyError(f"op {name!r} is already registered")
    table[name] = factory
    return factory
  return register


def register_op(name: str):
  """Decorator: registers `factory(*params) -> Op` as op `name`."""
  return _register(OPS, name)


def register_crop(name: str):
  """Decorator: registers `factory(*params) -> Crop` as crop op `name`."""
  return _register(CROPS, name)


def valid_ops() -> str:
  """The registered names, for error messages."""
  return f"crop ops ({', '.join(CROPS)}) and ops ({', '.join(OPS)})"


def parse_call(text: str) -> tuple[str, tuple, dict]:
  """`"name"` -> (name, (), {}); `"name(1, kw='a')"` -> (name, (1,), {"kw": "a"}).

  Arguments must be Python literals (numbers, strings, tuples, None, booleans). Raises a
  one-line ValueError naming `text` otherwise (the name is not looked up here).
  """
  def fail(reason):
    raise ValueError(f"cannot parse op {text.strip()!r} ({reason}): write name or "
                     f"name(literal, ..., kw=literal); valid: {valid_ops()}")
  try:
    expr = ast.parse(text.strip(), mode="eval").body
  except SyntaxError as e:
    fail(f"syntax: {e.msg}")
  if isinstance(expr, ast.Name):
    return expr.id, (), {}
  if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)):
    fail("not a name or a call")
  try:
    args = tuple(ast.literal_eval(arg) for arg in expr.args)
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in expr.keywords if kw.arg}
  except ValueError:
    fail("arguments must be literals")
  if len(kwargs) != len(expr.keywords):
    fail("no **kwargs")
  return expr.func.id, args, kwargs


def format_call(name: str, args: tuple, kwargs: dict) -> str:
  """The canonical text of a call: `name` without arguments, else `name(1, kw='a')`."""
  if not args and not kwargs:
    return name
  return f"{name}({', '.join([repr(a) for a in args] + [f'{k}={v!r}' for k, v in kwargs.items()])})"


def build(text: str, table: dict):
  """The op (or crop) of the call `text` from `table` (`OPS` or `CROPS`); a one-line
  ValueError for an unknown name or arguments its factory does not take or rejects."""
  name, args, kwargs = parse_call(text)
  if name not in table:
    raise ValueError(f"unknown op {name!r}; valid: {valid_ops()}")
  factory = table[name]
  try:
    inspect.signature(factory).bind(*args, **kwargs)
    return factory(*args, **kwargs)
  except TypeError as e:  # arguments it does not take, or of a type its checks cannot compare
    raise ValueError(f"op {text.strip()!r}: {e}; {name} takes "
                     f"{inspect.signature(factory)}") from None


def check(condition: bool, message: str):
  """A factory's argument check: ValueError(message) unless `condition`."""
  if not condition:
    raise ValueError(message)
