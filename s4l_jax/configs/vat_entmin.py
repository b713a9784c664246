"""VAT + entropy minimisation (S4L Table 1, "VAT + EntMin"; `s4l:config/vat_entmin.sh`).

Same args and settings as `configs/vat.py` with entmin_weight 1.0.
"""
from s4l_jax import config_lib


def get_config(arg=None):
  return config_lib.vat_config(arg, entmin_weight=1.0)
