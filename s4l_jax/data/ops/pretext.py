"""Pretext-task ops: jigsaw tiles (Noroozi & Favaro), relative-position patch pairs and colour
dropping (Doersch et al. 2015), on crops (S, S, C) in [0, 1].

Registered: `jigsaw_tiles` (9 copies: the tiles of a jittered 3x3 grid, smaller than the crop:
`grid_geometry`), `patch_pair` (2 copies: the centre tile and a random neighbour, labelled
`position`), `color_drop`.
"""
import jax
import jax.numpy as jnp

from s4l_jax.data.ops import registry

GRID = 3  # jigsaw / relative position: a 3x3 grid of cells
NUM_TILES = GRID * GRID
TILE_FRACTION = (64, 75)  # tile side / cell side of Noroozi & Favaro (64 px tiles, 75 px cells)
CENTRE = NUM_TILES // 2
NEIGHBOURS = tuple(c for c in range(NUM_TILES) if c != CENTRE)  # position label -> cell
DROP_NOISE = 0.01  # colour dropping: noise std / the kept channel's std (Doersch et al.)


def grid_geometry(size: int) -> tuple[int, int, int]:
  """(cell, tile, origin) in pixels of the 3x3 grid on a size x size crop: cells of side
  size // 3 from `origin` (the grid centred, offsets rounded down), tiles of side
  cell * 64 // 75 (>= 1): 16 px -> 5, 4; 32 px -> 10, 8; 225 px -> 75, 64."""
  cell = size // GRID
  return cell, max(1, cell * TILE_FRACTION[0] // TILE_FRACTION[1]), (size - GRID * cell) // 2


def tile_corners(rng, size: int):
  """int32 (9, 2) top-left (y, x) of each cell's tile, cells in row-major order: the cell's
  corner plus a random jitter in [0, cell - tile] per tile and axis (the gap between tiles)."""
  cell, tile, origin = grid_geometry(size)
  jitter = jax.random.randint(rng, (NUM_TILES, 2), 0, cell - tile + 1)
  cells = jnp.stack(jnp.divmod(jnp.arange(NUM_TILES), GRID), axis=-1)
  return (origin + cells * cell + jitter).astype(jnp.int32)


def grid_tiles(rng, image):
  """The 9 jittered tiles of (S, S, C), in grid (row-major) order: (9, t, t, C)."""
  size, channels = image.shape[0], image.shape[2]
  tile = grid_geometry(size)[1]
  cut = lambda yx: jax.lax.dynamic_slice(image, (yx[0], yx[1], 0), (tile, tile, channels))
  return jax.vmap(cut)(tile_corners(rng, size))


def patch_pair(rng, image):
  """Relative position (Doersch et al. 2015): the centre tile and one of its 8 neighbours,
  drawn uniformly, of the jittered grid: ((2, t, t, C), position label in [0, 8))."""
  k_pos, k_tiles = jax.random.split(rng)
  position = jax.random.randint(k_pos, (), 0, len(NEIGHBOURS))
  tiles = grid_tiles(k_tiles, image)
  return jnp.stack([tiles[CENTRE], tiles[jnp.asarray(NEIGHBOURS)[position]]]), position


def color_drop(rng, image):
  """Doersch et al.'s guard against chromatic aberration on (s, s, C): keep one random
  channel, replace the others by Gaussian noise of DROP_NOISE x its std around its mean."""
  k_keep, k_noise = jax.random.split(rng)
  keep = jax.random.randint(k_keep, (), 0, image.shape[-1])
  kept = jnp.take(image, keep, axis=-1)
  noise = kept.mean() + DROP_NOISE * kept.std() * jax.random.normal(k_noise, image.shape)
  return jnp.where(jnp.arange(image.shape[-1]) == keep, image, noise)


@registry.register_op("jigsaw_tiles")
def jigsaw_tiles_op():
  """The 9 jittered grid tiles of each crop, in grid order."""
  return registry.Op(grid_tiles, copies=NUM_TILES)


@registry.register_op("patch_pair")
def patch_pair_op():
  """The centre tile and a random neighbour, labelled `position`."""
  return registry.Op(patch_pair, copies=2, label="position")


@registry.register_op("color_drop")
def color_drop_op():
  """Doersch et al.'s colour dropping (`color_drop`)."""
  return registry.Op(color_drop)
