from setuptools import find_packages, setup


def read_requirements(path='requirements/runtime.txt'):
    with open(path) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()]


setup(
    name='mmseg-reclip',
    version='0.1.0',
    description='ReCLIP++ (unsupervised semantic segmentation by rectifying CLIP) '
    'for MMSegmentation 1.x',
    packages=find_packages(include=['mmseg_reclip', 'mmseg_reclip.*']),
    package_data={'mmseg_reclip': ['models/utils/model_configs/*.json']},
    python_requires='>=3.8',
    install_requires=read_requirements(),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
)
