"""Tests for the op registry and the grammar of op calls in views (`name(args, kw=value)`)."""
import pytest

from s4l_jax.data import views
from s4l_jax.data.ops import randaugment, registry


@pytest.mark.parametrize("text, want", [
    ("flip", ("flip", (), {})),
    (" cutout(0.5) ", ("cutout", (0.5,), {})),
    ("randaugment(2, 27)", ("randaugment", (2, 27), {})),
    ("randaugment(num_ops=1, magnitude=None)", ("randaugment", (), {"num_ops": 1,
                                                                   "magnitude": None})),
    ("x(-1, (2, 3), 'a', k=True)", ("x", (-1, (2, 3), "a"), {"k": True})),
])
def test_parse_call_reads_literal_args_and_kwargs(text, want):
  assert registry.parse_call(text) == want


def test_format_call_is_the_canonical_text():
  assert registry.format_call("flip", (), {}) == "flip"
  assert registry.format_call("randaugment", (2, 27), {"k": "a"}) == "randaugment(2, 27, k='a')"
  assert registry.parse_call(registry.format_call("c", (0.5, None), {"p": 0.2})) == (
      "c", (0.5, None), {"p": 0.2})


def test_view_parses_args_kwargs_copies_and_only():
  spec = views.parse_view("central_crop*2|flip|shift|randaugment( 2,27 )@1|cutout(fraction=0.5)@1")
  assert spec == views.View("central_crop", ("flip", "shift", "randaugment(2, 27)@1",
                                             "cutout(fraction=0.5)@1"), crops=2)
  assert views.copies("pad_crop(2)*3|flip|rotate4|color_jitter(0.5)@2") == 12
  assert views.parse_view("pad_crop(pad=2)|flip").crop == "pad_crop(pad=2)"
  assert views.resolve("central_crop_875(0.5)", "pad_crop").resize == "bicubic"  # view_fields


@pytest.mark.parametrize("view, match", [
    ("pad_crop|randaugment(2, 27|cutout", r"cannot parse op 'randaugment\(2, 27' \(syntax"),
    ("pad_crop|cutout((0.5)", r"cannot parse op 'cutout\(\(0.5\)' \(syntax"),
    ("pad_crop|cutout('0.5)", r"""cannot parse op "cutout\('0.5\)" \(syntax"""),
    ("pad_crop|cutout(x)", r"'cutout\(x\)' \(arguments must be literals\)"),
    ("pad_crop|ops.cutout(0.5)", r"'ops.cutout\(0.5\)' \(not a name or a call\)"),
    ("pad_crop|cutout(0.5)(1)", r"not a name or a call"),
    ("pad_crop|cutout(**{'fraction': 1})", r"no \*\*kwargs"),
    ("pad_crop|cutt(0.5)", r"unknown op 'cutt'"),
    ("pad_crop|cutout(0.5, 1)", r"op 'cutout\(0.5, 1\)': too many positional arguments; "
                                r"cutout takes \(fraction: float = 0.5\)"),
    ("pad_crop|cutout(size=3)", r"unexpected keyword argument 'size'; cutout takes"),
    ("pad_crop|cutout(1.5)", r"cutout: fraction must be in \(0, 1\], got 1.5"),
    ("pad_crop|randaugment(2, 31)", r"magnitude must be None or in \[0, 30\], got 31"),
    ("pad_crop|randaugment(0)", r"num_ops must be an int >= 1, got 0"),
    ("pad_crop|cutout('half')", r"op \"cutout\('half'\)\": '<' not supported .*; cutout takes"),
    ("pad_crop(-1)|flip", r"pad must be an int >= 0, got -1"),
    ("pad_crop|color_jitter(p=2)", r"p must be in \[0, 1\]"),
    ("central_crop*2|rotate4@1", r"'rotate4@1' needs a random op"),
    ("central_crop*2|cutout(0.5)@2", r"0 <= k < 2"),
])
def test_bad_op_call_is_one_line_naming_the_view_and_op(view, match):
  with pytest.raises(ValueError, match=match) as e:
    views.parse_view(view)
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"view {view!r}: ")


@pytest.mark.parametrize("view", ["pad_crop|cutt(0.5)", "pad_crop|cutout(x)",
                                  "pad_crop|randaugment(2, 27|cutout"])
def test_unknown_or_unparsable_op_lists_the_valid_ops(view):
  with pytest.raises(ValueError) as e:
    views.parse_view(view)
  assert all(name in str(e.value) for name in list(registry.OPS) + list(registry.CROPS))


def test_registering_a_name_twice_fails():
  with pytest.raises(KeyError, match="'flip' is already registered"):
    registry.register_op("flip")(lambda: None)


def test_every_op_builds_with_its_defaults():
  for name, factory in registry.OPS.items():
    assert isinstance(factory(), registry.Op), name
  for name, factory in registry.CROPS.items():
    assert isinstance(factory(), registry.Crop), name
  assert registry.OPS["randaugment"] is randaugment.randaugment_op
