"""mmjax: multimodal deep learning in JAX/Flax (image, text, audio)."""

from setuptools import find_packages, setup

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
    # Ranges known to work together: Python 3.11 resolves jax 0.10.x, Python 3.12 GPU images jax 0.11.x.
    install_requires=[
        'jax>=0.10,<0.12',
        'flax>=0.12.8,<0.13',
        'optax>=0.2.8,<0.3',
        'orbax-checkpoint>=0.12.8,<0.13',
        'ml_collections>=1.1,<2',
        'absl-py>=2.1,<3',
        'numpy>=2.0,<3',
        'tensorflow-datasets>=4.9.10,<5',   # used without TensorFlow (array_record + grain)
        'grain>=0.2.18,<0.3',
        'array_record>=0.8,<0.9',
        'importlib_resources>=6',          # TFDS needs it to locate in-package builders
        'pillow>=10,<14',                  # PNG encode/decode for TFDS images without TF
        'tensorboardX>=2.6,<3',
        'psutil>=5.9',
    ],
    extras_require={
        'test': ['pytest>=8,<10', 'librosa>=0.10,<0.12', 'portpicker>=1.6,<2'],
        'cuda': ['jax[cuda12]>=0.10,<0.12'],
        'tpu': ['jax[tpu]>=0.10,<0.12'],
    },
)
