"""VAT + entropy minimisation (S4L Table 1, "VAT + EntMin"; `s4l:config/vat_entmin.sh`).

Same args and settings as `configs/vat.py` with entmin_weight 1.0.
"""
from s4l_jax.configs import common


def get_config(arg=None):
  return common.vat_row(arg, entmin_weight=1.0)
