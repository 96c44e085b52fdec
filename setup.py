"""mmjax: multimodal deep learning in JAX/Flax (image, text, audio)."""

from setuptools import find_packages, setup

# Lower bounds: the oldest releases the tests were run with (jax 0.10.0, flax 0.12.4, optax 0.2.6,
# orbax-checkpoint 0.12.2, grain 0.2.15, tensorboardX 2.6.2.2, numpy 2.1.3); the
# newest the tests ran with are the upper ends that a fresh Python 3.11 install resolves. jax and
# jaxlib 0.11-0.12 need Python 3.12+.
JAX = '>=0.10,<0.13'

setup(
    name='mmjax',
    version='0.1.0',
    description='A JAX/Flax research codebase for multimodal deep learning: encoders, fusion, '
                'data-parallel training.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.11,<3.14',
    packages=find_packages(include=['mmjax', 'mmjax.*']),
    package_data={'mmjax.data': ['fsdd_manifest.tsv']},
    # What mmjax imports, and one package TFDS needs but does not declare (array_record and
    # simple_parsing come with TFDS).
    install_requires=[
        f'jax{JAX}',
        'flax>=0.12.4,<0.13',
        'optax>=0.2.6,<0.3',
        'orbax-checkpoint>=0.12.2,<0.13',
        'etils[epath]>=1.9.1',               # every workdir, checkpoint and metrics path
        'ml_collections>=1.1,<2',
        'absl-py>=2.1,<3',
        'numpy>=2.1,<3',
        # jax's dtypes. 0.7.0 takes 1.2 s to import here (0.6.0: 0.17 s), which every process
        # that imports jax pays: `import mmjax.main` took 2.4-2.7 s instead of 3.7-4.2 s.
        'ml_dtypes>=0.5,<0.7',
        # Used without TensorFlow (array_record + grain). 4.9.9 cannot read dataset_info with
        # protobuf 7 (the newest), and its `build` command is another parser.
        'tensorflow-datasets>=4.9.10,<5',
        'grain>=0.2.15,<0.3',
        'pillow>=10.4,<14',                  # PNG encode/decode for TFDS images without TF
        'importlib_resources>=6',            # TFDS imports it to build datasets defined in a
                                             # package (mmjax's) but does not declare it
        'tensorboardX>=2.6.2.2,<3',
        'matplotlib>=3.8',                   # curves.png of every run (mmjax.plot), sweep plots
        'psutil>=5.9',                       # experiments/bench_memory.py
        'scipy>=1.13',                       # the sweeps' paired-difference intervals (t quantile)
        'cvxpy>=1.5,<2',                     # mmjax.pid's convex program (Clarabel ships with it)
    ],
    extras_require={
        # dit: reference BROJA values for mmjax.pid (tests/test_pid.py).
        'test': ['pytest>=8,<10', 'pytest-xdist>=3.5,<4', 'portpicker>=1.6,<2',
                 'librosa>=0.10,<0.12', 'dit>=2.3,<3'],
        # `tensorboard --logdir runs` on the event files every run writes.
        'tensorboard': ['tensorboard>=2.16'],
        'cuda': [f'jax[cuda12]{JAX}'],
        'tpu': [f'jax[tpu]{JAX}'],
        # gs:// workdirs and data dirs: etils.epath and TFDS through gcsfs; TensorBoard event files
        # (tensorboardX) and Orbax's bucket queries through google-cloud-storage.
        'gcs': ['gcsfs>=2024.2', 'google-cloud-storage>=2.14'],
    },
)
