"""FixMatch (Sohn et al. 2020) with RandAugment (the paper's "FixMatch (RA)" rows).

Args (`--config=configs/fixmatch.py:dataset=digits`):
  dataset: cifar10 (default) | imagenet2012 | digits | folder:PATH
  labels:  the paper's rows: cifar10 40 | 250 (default) | 4000 (totals, i.e. 4 / 25 / 400 per
           class, `subsets.parse_labels_spec`); imagenet2012 10pct (default); else 10pct
           (the default: the dataset's `DatasetFamily.benchmark_labels`)
  regime:  paper (the default on the paper's datasets, imagenet2012 and cifar10): the paper's
           row for the dataset (`PAPER_ROWS`: the ImageNet row; the CIFAR-10 rows on cifar10,
           folders and digits); small (the default elsewhere): the CPU check below
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

CIFAR-10 (and folders), the paper's settings: WRN-28-2; labeled batch B = 64 with view weak
(flip + shift by up to 12.5 %, reflect pad), unlabeled batch mu B = 7 * 64 = 448 images, each
as a weak and a strong (weak + RandAugment + Cutout) view; threshold 0.95, lambda_u = 1;
SGD with Nesterov momentum 0.9, lr 0.03 * cos(7 pi k / 16 K) without warm-up; weight decay
5e-4; evaluation with the EMA of the weights, decay 0.999 per step. The paper trains
K = 2^20 steps (kept here: about 12 GPU-days on one GPU at this batch; set steps= to shorten).
Weight decay: this project's `momentum` optimizer adds wd * W to the kernels' gradients only
(coupled L2, `optim.py`), which is what the released code does (`wd * sum(l2_loss(kernel))`
in fixmatch.py), so `weight_decay = 5e-4` reproduces it; BN scales and biases are not decayed.
Differences from the released code: its WRN uses leaky ReLU (0.1) and BN momentum 0.999
(here the project's WRN); its EMA starts at the initial weights (here zero-debiased); its RA
applies each op with probability 0.5 with AutoAugment's ranges (here the paper's Table 12,
`s4l_jax/data/randaugment.py`).

ImageNet 10 % (the paper's ResNet-50 row: README.md, Paper rows): the released imagenet/
code's settings (`DEFAULT_COMMON_HPARAMS`, `DEFAULT_FIXMATCH_HPARAMS` and the README command;
the paper's appendix was not checked): mu = 5, threshold 0.7, lambda_u = 10, lr 0.1 per 256
labeled images with Nesterov momentum 0.9, 50 labeled epochs of warm-up then x0.1 every 500,
3000 labeled epochs, weight decay 3e-4 (coupled L2 here; whether Keras' l2 doubles it:
unchecked), EMA 0.999. Guesses: labeled batch 1024 (the README's TPU command gives 32 per
core); ResNet-50 v2 (the project's trunk; theirs is v1); weak view = inception crop + flip,
strong = + the same RA + Cutout (theirs: an ImageNet RA list with Invert and SolarizeAdd).

regime=small, a CPU check, not a paper setting: `common.small_data_preset`'s sizes of the
dataset for the labeled batch and 3/4 of its steps (digits: WRN-10-1 at 16 px, B = 32,
mu = 7, 300 steps), lr 0.03 with the FixMatch cosine and no warm-up, EMA 0.99 (0.999 would
average over more steps than the run has); threshold 0.95 kept (on digits it fires within
this budget: docs/results.md, the FixMatch single run).
"""
from s4l_jax import budget, config_lib
from s4l_jax.configs import common
from s4l_jax.data import datasets

PAPER_DATASETS = ("imagenet2012", "cifar10")  # regime=paper by default on these
WEAK = "central_crop|flip|shift"
WEAK_STRONG = "central_crop*2|flip|shift|randaugment@1|cutout@1"  # copy 0 weak, 1 strong
SMALL_STEPS_FRACTION = 0.75  # regime=small: the small regime's steps x this (digits: 300)


def imagenet_row(c):
  """The ImageNet 10 % row (mu = 5); returns mu."""
  c.input.labeled.batch_size = 1024
  c.input.labeled.view = "inception_crop|flip"
  c.input.unlabeled.view = "inception_crop*2|flip|randaugment@1|cutout@1"
  c.loss.threshold, c.loss.unlabeled_weight = 0.7, 10.0
  c.lr.base, c.lr.scale_batch_size = 0.1, 256
  c.lr.warmup_epochs = 50.0
  c.lr.decay_epochs = (500.0, 1000.0, 1500.0, 2000.0, 2500.0)
  c.optimizer.weight_decay = 3e-4
  budget.set_duration(c, total_epochs=3000.0)
  c.log_every_steps, c.checkpoint_every_steps = 100, 1000
  return 5


def cifar10_row(c):
  """The CIFAR-10 rows (mu = 7, 2^20 steps); returns mu."""
  c.lr.schedule, c.lr.base = "fixmatch_cosine", 0.03
  c.optimizer.weight_decay = 5e-4
  budget.set_duration(c, total_steps=2 ** 20)
  c.log_every_steps, c.checkpoint_every_steps = 1000, 10000
  return 7


def small_check(c):
  """regime=small: the CPU check on `common.small_data_preset` (mu = 7); returns mu."""
  common.small_data_preset(c)
  c.lr.schedule, c.lr.base, c.lr.warmup_epochs = "fixmatch_cosine", 0.03, 0.0
  c.ema_decay = 0.99
  small_steps = datasets.get(c.dataset).small.steps
  budget.set_duration(c, total_steps=round(SMALL_STEPS_FRACTION * small_steps))
  return 7


# regime=paper: the paper's row for each dataset family (its CIFAR-10 rows off ImageNet).
PAPER_ROWS = dict(imagenet2012=imagenet_row, cifar10=cifar10_row, folder=cifar10_row,
                  digits=cifar10_row)


def get_config(arg=None):
  a = config_lib.parse_arg(arg, paper_datasets=PAPER_DATASETS, dataset="cifar10", labels="",
                           steps=0)
  family = datasets.get(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels or family.benchmark_labels,
                             evals=a.evals, labeled_batch=64)
  config_lib.set_objective(c, "fixmatch")
  c.optimizer.nesterov = True
  c.lr.scale_batch_size = 0
  c.lr.warmup_epochs = 0.0
  c.ema_decay = 0.999
  c.input.labeled.view, c.input.unlabeled.view = WEAK, WEAK_STRONG
  recipe = PAPER_ROWS[family.name] if a.regime == "paper" else small_check
  mu = recipe(c)
  c.input.unlabeled.batch_size = mu * c.input.labeled.batch_size
  common.set_steps(a.steps, c)
  return c
