"""Checks peer_lightly's PyTorch port of this project's WRN trunk (`S4lWideResNet`, with
lightly's projection head and NT-Xent) against s4l_jax: the same weights and inputs give the
same projections, loss and gradients (train mode, BN over the batch of both views).

    PYTHONPATH=. python benchmarks/simclr_port_check.py write /tmp/port.npz   # s4l_jax's Python
    PEER_PYTHON benchmarks/simclr_port_check.py compare /tmp/port.npz        # torch + lightly

`write` initialises WRN-10-1 + SimCLRv2's 3-layer head (seed 0), draws 2 x 64 random images in
[-1, 1] and saves the inputs, the parameters, the projections, the NT-Xent (temperature 0.5)
and its gradients, halved to lightly's units (this project sums both directions). `compare`
loads the parameters into the port and prints the largest differences; exit status 1 when the
loss or projections differ by more than 1e-4 relative or a gradient by more than 1e-2
(relative L2 norm: float32 sums in a different order).
"""
import sys

import numpy as np

TEMPERATURE, HALF = 0.5, 64
UNITS = ("block1_unit1", "block2_unit1", "block3_unit1")  # WRN-10-1


def write(path: str):
  import jax  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from s4l_jax import losses, models  # pylint: disable=g-import-not-at-top
  model = models.build_model(dict(name="wrn", depth=10, width=1, bn_momentum=0.9, heads=dict(
      proj=dict(dims=(0, 0, 128), batch_norm=True, use_bias=False, kernel_init="normal",
                output_bn_bias=True))), num_classes=10)
  x = np.random.default_rng(0).uniform(-1, 1, (2 * HALF, 32, 32, 3)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), x, train=False)

  def loss_fn(params):
    out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                         train=True, mutable=["batch_stats"])
    return losses.nt_xent(out["proj"][:HALF], out["proj"][HALF:], TEMPERATURE)[0], out["proj"]

  (loss, z), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
  flat = lambda tree, prefix: {prefix + "/".join(k): np.asarray(v)
                               for k, v in traverse_util.flatten_dict(tree).items()}
  np.savez(path, x=x, loss=float(loss) / 2, z=np.asarray(z), **flat(variables["params"], "p:"),
           **flat(jax.tree.map(lambda g: g / 2, grads), "g:"))


def compare(path: str) -> bool:
  import torch  # pylint: disable=g-import-not-at-top
  from lightly.loss import NTXentLoss  # pylint: disable=g-import-not-at-top
  from peer_lightly import SimCLR  # pylint: disable=g-import-not-at-top
  d = np.load(path)
  model = SimCLR(dict(trunk="s4l_jax", depth=10, width=1, bn_momentum=0.9, leaky_relu_slope=0.0,
                      proj_dim=128, proj_layers=3, head_bn_epsilon=1e-3))
  trunk, layers = model.trunk, model.head.layers
  pairs = [(trunk.root_conv.weight, "trunk/root_conv/kernel")]  # (torch parameter, flax path)
  for unit, name in zip(trunk.units, UNITS):
    pairs += [(unit[p].weight, f"trunk/{name}_{p}/kernel") for p in ("conv1", "conv2", "proj")
              if p in unit]
    pairs += [(getattr(unit[p], a), f"trunk/{name}_{p}/{f}") for p in ("bn0", "bn1")
              for a, f in (("weight", "scale"), ("bias", "bias"))]
  pairs += [(trunk.final_bn.weight, "trunk/final_bn/scale"),
            (trunk.final_bn.bias, "trunk/final_bn/bias")]
  for k, (dense, bn) in enumerate(((layers[0], layers[1]), (layers[3], layers[4]),
                                   (layers[6], layers[7])), 1):
    pairs += [(dense.weight, f"head_proj_{k}/kernel"), (bn.weight, f"head_proj_{k}/bn/scale"),
              (bn.bias, f"head_proj_{k}/bn/bias")]
  assert len(pairs) == len(list(model.parameters())), "a parameter of the port is unmapped"
  # flax kernels: conv HWIO -> torch OIHW, dense (in, out) -> (out, in).
  to_torch = lambda a: np.ascontiguousarray(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T)
  with torch.no_grad():
    for param, key in pairs:
      param.copy_(torch.tensor(to_torch(d["p:" + key])))
  model.train()
  z = model(torch.tensor(d["x"]).permute(0, 3, 1, 2).contiguous())
  loss = NTXentLoss(temperature=TEMPERATURE)(z[:HALF], z[HALF:])
  loss.backward()
  loss_diff = abs(loss.item() - float(d["loss"])) / abs(float(d["loss"]))
  z_diff = np.abs(z.detach().numpy() - d["z"]).max() / np.abs(d["z"]).max()
  grad_diff = {key: np.linalg.norm(param.grad.numpy() - to_torch(d["g:" + key]))
               / np.linalg.norm(param.grad.numpy()) for param, key in pairs}
  worst = max(grad_diff, key=grad_diff.get)
  print(f"loss {loss.item():.6f} vs {float(d['loss']):.6f} (rel {loss_diff:.1e}); projections "
        f"max rel {z_diff:.1e}; gradients of {len(pairs)} tensors: worst rel "
        f"{grad_diff[worst]:.1e} ({worst}), median {np.median(list(grad_diff.values())):.1e}")
  return loss_diff <= 1e-4 and z_diff <= 1e-4 and grad_diff[worst] <= 1e-2


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] not in ("write", "compare"):
    sys.exit("usage: simclr_port_check.py write|compare PATH.npz")
  if sys.argv[1] == "write":
    write(sys.argv[2])
  else:
    sys.exit(0 if compare(sys.argv[2]) else 1)
