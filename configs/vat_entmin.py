"""VAT + entropy minimisation (S4L Table 1, "VAT + EntMin"; `s4l:config/vat_entmin.sh`).

Same args and settings as `configs/vat.py` with entmin_weight 1.0 (methods.md 2.6).
"""
import importlib.util
import os


def get_config(arg=None):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vat.py")
  spec = importlib.util.spec_from_file_location("configs_vat", path)
  vat = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(vat)
  return vat.make_config(arg, entmin_weight=1.0)
