"""Fine-tuning a pretrained network on the labeled subset ("Rotation / Exemplar + Fine-tune").

Args (`--config=configs/finetune.py:pretrained=WORKDIR/export,dataset=digits`):
  pretrained: export dir of a `rotation` / `exemplar` run (required; its trunk and classes
              head initialise the model: `init_take=all`, every subtree of the model)
  dataset:    imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:     10pct (default) | 1pct | <int> | <int>perclass | all
  steps:      0 = the preset's budget; > 0 overrides the number of training steps

The network is the export's: its trunk architecture (export.json `model`: name, depth, width,
BatchNorm epsilon; `common.export_trunk`) replaces the preset's, so an export of any
width (a MOAM one, 2x wider on digits) fits; `--config.model.*` overrides still apply.

The supervised objective on the whole network, initialised from the export (its classes
head, which had no loss in pretraining, included). The paper's fine-tuning hyper-parameters
are not released; the defaults are the supervised rows (`s4l:config/supervised_imagenet_*.sh`;
unverified for this use): 10%: lr 0.1, wd 1e-3, decays 140/160/180, end 200; 1%: lr 0.01,
wd 1e-2, 700/800/900, end 1000.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, pretrained="", dataset="imagenet2012", labels="10pct", steps=0)
  if not a.pretrained:
    raise ValueError("finetune needs the pretrained export: "
                     "--config=configs/finetune.py:pretrained=WORKDIR/export")
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256)
  c.init_from = a.pretrained
  c.model.update(common.export_trunk(a.pretrained, missing_ok=True))
  c.trainable = "all"
  common.supervised_preset(c, a.regime, a.labels)
  common.set_steps(a.steps, c)
  return c
