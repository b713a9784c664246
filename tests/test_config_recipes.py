"""Every config x dataset x arg combination resolves as the committed dump says
(`tests/resolved_configs.py`), except the changes listed in `INTENDED_CHANGES`, `INTENDED_REWRITES`
and `INTENDED_ADDITIONS`."""
import re

import pytest

import resolved_configs
from s4l_jax.data import datasets

ABSENT = object()  # an INTENDED_CHANGES value: the key is gone
# Changes of the resolved configs made on purpose since the dump was written:
# (combination-key regex, flattened key path, new value, why). Each must match some combination.
INTENDED_CHANGES = (
    (r"^moam:dataset=(cifar10|folder:)", "stages.step1.input.unlabeled.batch_size", 64,
     "MOAM step 1 under regime=small: as many unlabeled images a step as labeled ones (the "
     "small batch, 64), as on digits and in the paper; it was base_config's 32, copied "
     "before the preset set the labeled batch"),
    *((r"^fixmatch:dataset=folder:", path, value,
       "FixMatch on a folder defaults to regime=small (the paper trained on imagenet2012 and "
       "cifar10 only): the CPU check on the family's small sizes, not the CIFAR-10 row")
      for path, value in (("checkpoint_every_steps", 500), ("ema_decay", 0.99),
                          ("log_every_steps", 100))),
    (r"^fixmatch:dataset=folder:[^,]*(,labels=\w+)?$", "total_steps", 3000,
     "FixMatch's regime=small on a folder: 3/4 of the small regime's 4,000 steps"),
    (r"^label_efficiency folder:\S+ fixmatch", "log_every_steps", 100,
     "the harness's regime=small FixMatch on a folder is the CPU check (logging cadence "
     "only: every other key is the harness's or equal)"),
    (r"^(simclrv2:|label_efficiency \S+ simclrv2 )", "stages.distill.loss.scale_by_temperature_squared",
     False, "the distill objective's declared default, now filled into the config (the loss "
     "read the same False through .get before)"),
)


@pytest.fixture(name="dump", scope="module")
def dump_fixture():
  return resolved_configs.load()


# Intended rewrites of existing values: (combination-key regex, flattened-key regex,
# fn(old value) -> new value, why).
INTENDED_REWRITES = (
    (r"noisy_student", r"^stages\.\w+\.input\.labeled\.view$",
     lambda view: view.replace("|randaugment", "|randaugment(2, 27)"),
     "Noisy Student's RandAugment at the paper's fixed magnitude 27 (was FixMatch's random "
     "magnitudes)"),
    (r"^simclrv2:dataset=cifar10", r"^stages\.pretrain\.input\.(un)?labeled\.view$",
     lambda view: "pad_crop*2|simclr_augment(0.5)",
     "SimCLR's CIFAR-10 colour-jitter strength 0.5 (was ImageNet's 1)"),
)


# Keys added since the dump was written: (combination-key regex, fn(flattened config) ->
# {path: value}, why).
STREAM_BATCH = re.compile(r"^(?P<stream>(.+\.)?input\.(?P<name>labeled|unlabeled))\.batch_size$")
INTENDED_ADDITIONS = (
    (r"", lambda flat: {f"{m['stream']}.source": m["name"]
                        for m in map(STREAM_BATCH.search, flat) if m},
     "every stream declares its source (s4l_jax/data/streams.py): the labeled and unlabeled "
     "streams draw from the sources of their names, as they did"),
    (r".", lambda flat: {path.removesuffix("dataset") + "input.eval_crop":
                         datasets.get(name).eval_crop for path, name in flat.items()
                         if path.rpartition(".")[2] == "dataset"},
     "input.eval_crop, the eval crop of both pipelines (a registered crop op), from the "
     "dataset family: what each family evaluated with before (ImageNet: S4L's "
     "resize_small_crop; the in-memory images as stored elsewhere), now a config key"),
)


def expected_config(key: str, dumped: dict) -> dict:
  """The dumped combination's flattened config with the intended changes applied."""
  flat = resolved_configs.flatten(dumped)
  for pattern, add, _ in INTENDED_ADDITIONS:
    if re.search(pattern, key):
      flat.update(add(flat))
  for pattern, path, value, _ in INTENDED_CHANGES:
    if re.search(pattern, key):
      if value is ABSENT:
        flat.pop(path, None)
      else:
        flat[path] = value
  for pattern, path, rewrite, _ in INTENDED_REWRITES:
    if re.search(pattern, key):
      flat.update({p: rewrite(v) for p, v in flat.items() if re.search(path, p)})
  return flat


@pytest.mark.slow  # ~14 s on 2 cores: 828 loads, the jigsaw permutations and ab bins once
def test_every_combination_resolves_as_dumped(dump):
  actual = resolved_configs.resolve_all()
  assert sorted(actual) == sorted(dump), "combinations added or removed: regenerate the dump"
  differences = []
  for key in sorted(dump):
    expected = expected_config(key, dump[key])
    got = resolved_configs.flatten(actual[key])
    diff = resolved_configs.first_difference(expected, got)
    if diff:
      differences.append(f"{key}: {diff}")
  assert not differences, f"{len(differences)} combinations differ:\n" + "\n".join(
      differences[:40])


def test_every_intended_change_matches_a_combination(dump):
  for pattern, *_, why in INTENDED_CHANGES + INTENDED_REWRITES + INTENDED_ADDITIONS:
    assert any(re.search(pattern, k) for k in dump), (pattern, why)
    assert why, pattern


def test_first_difference_names_the_path():
  assert resolved_configs.first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) \
      == "a.c: 2 -> 3"
  assert resolved_configs.first_difference({"a": 1.0}, {"a": 1}) == "a: 1.0 -> 1"  # types count
  assert resolved_configs.first_difference({"a": 1}, {"a": 1, "b": 0}) == "b: '<absent>' -> 0"
  assert resolved_configs.first_difference({"a": [1, 2]}, {"a": [1, 2]}) is None
