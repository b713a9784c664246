"""Named trunk architectures (`model` keys of a config; `DatasetFamily.model` names one) and
SimCLRv2's projection head."""

SIMCLR_BN = dict(bn_momentum=0.9, bn_epsilon=1e-5)  # simclr:resnet.py, run.py defaults
SIMCLR_SK_RATIO = 0.0625  # the selective-kernel ratio of every released SimCLRv2 SK model
SIMCLR_PROJ_DIM = 128  # SimCLRv2's projection output width
MODEL_PRESETS = {
    "resnet50v2": dict(name="resnet50v2", filters_factor=4),
    "wrn": dict(name="wrn", depth=28, width=2),
    "wrn_tiny": dict(name="wrn", depth=10, width=1),
    # SimCLRv2 encoders (released: sk_ratio 0 or 0.0625); r26_1x: bottleneck ResNet-26 for CPU.
    "r50_1x": dict(name="resnet_v1", depth=50, width_multiplier=1, sk_ratio=0.0, **SIMCLR_BN),
    "r50_2x_sk": dict(name="resnet_v1", depth=50, width_multiplier=2, sk_ratio=SIMCLR_SK_RATIO,
                      **SIMCLR_BN),
    "r152_3x_sk": dict(name="resnet_v1", depth=152, width_multiplier=3, sk_ratio=SIMCLR_SK_RATIO,
                       **SIMCLR_BN),
    "r26_1x": dict(name="resnet_v1", depth=26, width_multiplier=1, sk_ratio=0.0, **SIMCLR_BN),
}


def simclr_projection_head(keep: int = 0) -> dict:
  """SimCLRv2's projection head (`simclr:model_util.py`, 3 layers, hidden widths 0 = the
  encoder's width, no Dense bias, BN on every layer, the last without beta, Dense init
  N(0, 0.01^2)); `keep` = k > 0 keeps only its first k layers (fine-tuning from `proj_k`)."""
  return dict(dims=(0, 0, SIMCLR_PROJ_DIM), batch_norm=True, use_bias=False,
              output_bn_bias=False, kernel_init="normal", keep=keep)
