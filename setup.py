"""s4l_jax: S4L and SimCLRv2 semi-supervised learning in JAX/Flax."""
import setuptools

setuptools.setup(
    name="s4l_jax",
    version="0.1.0",
    description="S4L (Self-Supervised Semi-Supervised Learning) in JAX/Flax",
    packages=setuptools.find_packages(include=["s4l_jax", "s4l_jax.*"]),
    python_requires=">=3.11",
    # The trainer and the configs are inside the package (s4l_jax/train_main.py, configs/).
    entry_points={"console_scripts": [
        "s4l-train = s4l_jax.train_main:run",
        "s4l-evaluate = s4l_jax.evaluate:run",
        "s4l-embed = s4l_jax.embed:run",
        "s4l-convert = s4l_jax.convert:run",
    ]},
    install_requires=[
        # jax 0.10.2 is the newest on Python 3.11; 3.12 resolves 0.11/0.12.
        "jax>=0.10.2,<0.13",
        "jaxlib>=0.10.2,<0.13",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        # s4l_jax/storage.py (workdir files on paths and URLs); the version is Orbax's choice.
        "etils[epath]",
        "numpy>=2.0",
        "absl-py>=2.1",
        "ml-collections>=1.0,<2",
        # TensorBoard event files are written with the tensorboard package alone: clu's
        # writers import TensorFlow, which in-memory training must not need.
        "tensorboard>=2.18",
        "pillow>=10",
        # jax.export's (de)serialization (export/predict.jax, written by every run and read by
        # evaluate / pseudo-label / fine-tune) imports flatbuffers, which jax does not require;
        # without it only TensorFlow (the [tf] extra) brought it in. Any 24.x/25.x works
        # (pure Python, so 3.11 and 3.12 alike); TF 2.21 itself asks for >=25.9.23.
        "flatbuffers>=24.3.25",
        "scikit-learn>=1.4",  # ships the offline `digits` dataset
    ],
    extras_require={
        # tf.data pipelines and tfds datasets (imagenet2012, cifar10). Not needed
        # for in-memory datasets (digits, folder:PATH), e.g. on GPU machines.
        "tf": [
            "tensorflow-cpu>=2.18,<2.22",
            "tensorflow-datasets>=4.9.9,<5",
            "importlib_resources>=6",  # tfds download_and_prepare needs it
        ],
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",  # -n auto: one test process per core (.ci/run, Quick start)
            "tensorflow-cpu>=2.18,<2.22",
            "tensorflow-datasets>=4.9.9,<5",
            "importlib_resources>=6",
            "matplotlib>=3.8",  # benchmark plots (tests/test_benchmarks.py)
        ],
        # benchmarks/: plots, and PyTorch for benchmarks/cpu_peer.py (for its CPU wheel,
        # pip install torch --index-url https://download.pytorch.org/whl/cpu first).
        "bench": ["matplotlib>=3.8", "torch>=2.4"],
        # benchmarks/peer_parity.py's peer: USB (microsoft/Semi-supervised-learning) 0.3.2,
        # which pulls PyTorch, torchvision, timm, transformers; peer_simclr.py's: lightly
        # 1.6.0 (with USB's WideResNet); never in the base install.
        "parity": ["matplotlib>=3.8", "torch>=2.4", "torchvision>=0.19", "semilearn==0.3.2",
                   "lightly==1.6.0"],
    },
)
